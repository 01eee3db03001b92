"""Training files: OpenAI's chat fine-tuning format, one `{"messages": [...]}` object per line.

Each line is one conversation; its last message must be the assistant's answer, which is what the model learns
(earlier turns are context). Parsing is strict and every error names the line, so an upload is refused with a
clear 400 instead of a job failing later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from racenet.ml.backend import ChatMessage

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Largest training file a node accepts (a CPU fine-tune of a small model has no use for more)."""
MAX_EXAMPLES = 2_000
MIN_EXAMPLES = 1
MAX_MESSAGE_CHARS = 8_000
ROLES = frozenset({"system", "user", "assistant"})


class DataError(ValueError):
    """A training file that does not parse; the message names the line."""


@dataclass(frozen=True)
class Example:
    """One training conversation: context messages, then the assistant answer to learn."""

    messages: tuple[ChatMessage, ...]


def parse_jsonl(raw: bytes) -> list[Example]:
    """The examples of a chat JSONL file; DataError (naming the line) on anything else."""
    if len(raw) > MAX_FILE_BYTES:
        raise DataError(f"the file has {len(raw)} bytes; at most {MAX_FILE_BYTES} are accepted")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"the file is not UTF-8 text: {e}") from None
    examples = [_example(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not MIN_EXAMPLES <= len(examples) <= MAX_EXAMPLES:
        raise DataError(f"the file has {len(examples)} examples; {MIN_EXAMPLES} to {MAX_EXAMPLES} are accepted")
    return examples


def _example(number: int, line: str) -> Example:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"line {number} is not valid JSON: {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list) or not doc["messages"]:
        raise DataError(f'line {number}: expected {{"messages": [...]}} with at least one message')
    messages: list[ChatMessage] = []
    for i, message in enumerate(doc["messages"]):
        if not isinstance(message, dict) or set(message) - {"role", "content", "name"}:
            raise DataError(f"line {number}, message {i}: expected an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DataError(f"line {number}, message {i}: role must be one of {', '.join(sorted(ROLES))}")
        if not isinstance(content, str) or not content or len(content) > MAX_MESSAGE_CHARS:
            raise DataError(f"line {number}, message {i}: content must be a string of 1 to {MAX_MESSAGE_CHARS} chars")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "assistant":
        raise DataError(f"line {number}: the last message must be the assistant's answer to learn")
    return Example(tuple(messages))
