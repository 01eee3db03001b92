"""OpenAI Chat Completions and (legacy) Completions shapes: parsing a request, and rendering answers, stream
chunks, usage with its cost, and errors."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from racenet.ml.backend import (
    DEFAULT_MAX_TOKENS,
    ChatMessage,
    Completion,
    FinishEvent,
    GenerationRequest,
    TokenEvent,
)
from racenet.ml.errors import InvalidRequestError

UNAVAILABLE_RETRY_SECONDS = 5
"""The `Retry-After` of a 503 (no executor answered, the chain is unreachable): about a few blocks."""


class ApiError(Exception):
    """An error answered with an OpenAI-shaped body: HTTP status, type, code and message, and any extra
    response headers (`Retry-After` on a 429)."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        if status == 503:
            self.headers.setdefault("Retry-After", str(UNAVAILABLE_RETRY_SECONDS))

    def body(self) -> dict[str, Any]:
        """`{"error": {...}}` as the OpenAI API returns it."""
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def parse_request(raw: bytes) -> tuple[dict[str, Any], GenerationRequest, bool]:
    """(JSON body, generation request, stream?) from a request body; ApiError 400 when malformed."""
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required", param="model")
    messages = _messages(body)
    stop = body.get("stop") or ()
    top = body.get("top_logprobs") or 0
    if "prompt" in body and not isinstance(body.get("logprobs"), bool):
        top = body.get("logprobs") or 0  # legacy completions: `logprobs` is the number of alternatives
    try:
        request = GenerationRequest(
            model=model,
            messages=[ChatMessage(role=m.get("role"), content=_text(m.get("content"))) for m in messages],
            max_tokens=_max_tokens(body),
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            seed=body.get("seed"),
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            top_logprobs=int(top) if body.get("logprobs") else 0,
        )
    except (InvalidRequestError, TypeError, ValueError) as e:
        raise ApiError(400, str(e)) from e
    return body, request, bool(body.get("stream"))


def _messages(body: dict[str, Any]) -> list[Any]:
    """A chat body's messages, or a text completion's prompt as one user message (the models are chat models)."""
    if "prompt" in body:
        if "messages" in body:
            raise ApiError(400, "send either 'messages' (chat) or 'prompt' (text completion), not both")
        prompt = body["prompt"]
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "'prompt' must be a string (one prompt per request)", param="prompt")
        return [{"role": "user", "content": prompt}]
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "'messages' must be a list of {role, content} objects", param="messages")
    return messages


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_completion_tokens", body.get("max_tokens", DEFAULT_MAX_TOKENS))
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "max_tokens must be an integer", param="max_tokens")
    return value


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise ApiError(400, "message content must be a string or a list of text parts", param="messages")


def _logprob_entry(event: TokenEvent) -> dict[str, Any]:
    return {
        "token": event.token,
        "logprob": event.logprob,
        "bytes": list(event.token.encode()),
        "top_logprobs": [
            {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())} for t in event.top_logprobs
        ],
    }


@dataclass(frozen=True)
class Charge:
    """What a request cost: its token counts and nicoin; `settled` when read from the chain's receipt of its
    `inference/Finish`, else what that Finish charges for these counts at the price escrowed at Start."""

    prompt_tokens: int
    completion_tokens: int
    cost: int
    settled: bool


def usage_json(charge: Charge) -> dict[str, Any]:
    """OpenAI `usage`, with the cost in nicoin (the currency's base unit) and whether the chain has settled it."""
    return {
        "prompt_tokens": charge.prompt_tokens,
        "completion_tokens": charge.completion_tokens,
        "total_tokens": charge.prompt_tokens + charge.completion_tokens,
        "cost": charge.cost,
        "cost_settled": charge.settled,
    }


def completion_json(
    request_id: str, model: str, completion: Completion, logprobs: bool, usage: dict[str, Any]
) -> dict[str, Any]:
    """A non-streaming `chat.completion` object."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "logprobs": {"content": [_logprob_entry(t) for t in completion.tokens]} if logprobs else None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage,
    }


def text_completion_json(
    request_id: str, model: str, completion: Completion, logprobs: bool, usage: dict[str, Any]
) -> dict[str, Any]:
    """A non-streaming legacy `text_completion` object."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": completion.text,
                "logprobs": legacy_logprobs(completion.tokens) if logprobs else None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage,
    }


def legacy_logprobs(tokens: Sequence[TokenEvent]) -> dict[str, Any]:
    """The legacy completions' `logprobs`: tokens, their logprobs, top alternatives and text offsets."""
    offsets, offset = [], 0
    for t in tokens:
        offsets.append(offset)
        offset += len(t.text)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{a.token: a.logprob for a in t.top_logprobs} for t in tokens],
        "text_offset": offsets,
    }


def text_chunk_json(
    request_id: str, model: str, created: int, event: TokenEvent | FinishEvent, logprobs: bool
) -> dict[str, Any]:
    """One streamed legacy `text_completion` chunk for a generation event."""
    finish = event.finish_reason if isinstance(event, FinishEvent) else None
    tokens = [event] if logprobs and isinstance(event, TokenEvent) else []
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": event.text,
                "logprobs": legacy_logprobs(tokens) if tokens else None,
                "finish_reason": finish,
            }
        ],
    }


def chunk_json(
    request_id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish: str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`."""
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None if logprobs is None else {"content": logprobs},
                "finish_reason": finish,
            }
        ],
    }


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event line pair."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def stream_chunks(
    request_id: str, model: str, event: TokenEvent | FinishEvent, logprobs: bool, created: int
) -> dict[str, Any]:
    """The chunk for one generation event."""
    if isinstance(event, FinishEvent):
        return chunk_json(
            request_id, model, created, {"content": event.text} if event.text else {}, event.finish_reason
        )
    return chunk_json(
        request_id, model, created, {"content": event.text}, logprobs=[_logprob_entry(event)] if logprobs else None
    )
