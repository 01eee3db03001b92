"""Shared helpers of the Race (pow) tests."""

from __future__ import annotations

import threading

SEED = bytes(range(32))
LONG = 600.0


class StopAfter(list[int]):
    """A result list that sets a stop event once it holds `count` nonces (mining ends by count, not by time)."""

    def __init__(self, count: int, stop: threading.Event) -> None:
        super().__init__()
        self.limit, self.stop = count, stop

    def append(self, nonce: int) -> None:
        super().append(nonce)
        if len(self) >= self.limit:
            self.stop.set()
