"""Incremental detokenization with stop strings: generated token ids in, safe-to-send text deltas out.

A token may end inside a multi-byte UTF-8 character, and text may be the start of a stop string that the next
tokens complete. Neither may reach the client early, so such text is held back until it is settled. Decoding uses
a sliding window (the approach of vLLM and TGI), so each step costs O(1) in the length of the output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT_CHAR = "\ufffd"


class TextAssembler:
    """Accumulates generated token ids and releases text deltas, cutting the output before the first stop string."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = tuple(stop)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._text = ""
        self._emitted = 0
        self.stopped = False

    def add(self, token_id: int) -> str:
        """Append one token and return the text it releases; sets `stopped` once a stop string has appeared."""
        if self.stopped:
            raise RuntimeError("add() after a stop string ended the text")
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith(REPLACEMENT_CHAR):
            self._text += full[len(prefix) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
        return self._release()

    def flush(self) -> str:
        """Release whatever is still held back at the end of the generation (nothing after a stop)."""
        if self.stopped:
            return ""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        text = self._text + full[len(prefix) :]
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta

    def _release(self) -> str:
        start = self._emitted
        hits = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
        if hits:
            end = min(hits)
            self.stopped = True
        else:
            end = len(self._text) - self._held_stop_prefix(start)
        self._emitted = end
        return self._text[start:end]

    def _held_stop_prefix(self, start: int) -> int:
        """Length of the longest suffix of the unsent text that a stop string starts with."""
        tail = self._text[start:]
        longest = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(tail)), longest, -1):
                if tail.endswith(s[:k]):
                    longest = k
                    break
        return longest
