"""Error codes for rejected transactions and queries.

Every rejection carries a stable numeric code (ABCI `code`, never 0) and a human
message. A rejected transaction changes no state.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Stable numeric codes, shown to users and returned in ABCI responses."""

    OK = 0
    MALFORMED_TX = 1
    TX_TOO_LARGE = 2
    UNKNOWN_MESSAGE = 3
    WRONG_CHAIN_ID = 4
    BAD_SIGNATURE = 5
    WRONG_SEQUENCE = 6
    INSUFFICIENT_FEE = 7
    INSUFFICIENT_FUNDS = 8
    INVALID_MESSAGE = 9
    UNKNOWN_QUERY = 10
    NOT_FOUND = 11
    INVALID_QUERY = 12
    UNAUTHORIZED = 13
    DUPLICATE_REQUEST = 14
    OUT_OF_RANGE = 15
    ALREADY_DONE = 16
    TOO_EARLY = 18  # 17 was wrong_executor, retired: the chain now draws the executor itself
    INTERNAL = 99


class ChainError(Exception):
    """A rejection with a code; raised by handlers, turned into a TxResult by the App."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (code {int(self.code)} {self.code.name.lower()})"
