"""The state machine's scalar types: checked amounts and bytes that name what they hold.

`Amount` is an unsigned 64-bit integer whose arithmetic is checked: a sum, difference or
product that leaves [0, 2**64) raises `AmountError` (code `out_of_range`), so a message
handler that computes an escrow, a refund or a reward rejects its transaction instead of
wrapping, going negative or failing later in the store. Every quantity the chain stores as an
integer (nicoin, tokens, weights, powers, heights) is an Amount when it is read back.

`Address`, `PubKey` and `Hash` are plain `bytes` to the binary codec; the annotation tells the
JSON form how to show them (an address as bech32, the others as hex).
"""

from __future__ import annotations

from typing import Annotated, SupportsIndex

from racenet.chain.errors import ChainError, Code

MAX_AMOUNT = 2**64 - 1


class AmountError(ChainError):
    """An arithmetic result outside [0, 2**64): the transaction (or hook item) that computed it is rejected."""

    def __init__(self, value: int) -> None:
        reason = "negative" if value < 0 else f"above the maximum {MAX_AMOUNT}"
        super().__init__(Code.OUT_OF_RANGE, f"amount {value} is {reason}")


class Amount(int):
    """A u64 with checked +, - and *: every result is range-checked and is an Amount again."""

    def __new__(cls, value: SupportsIndex = 0) -> Amount:
        number = int(value)
        if not 0 <= number <= MAX_AMOUNT:
            raise AmountError(number)
        return super().__new__(cls, number)

    def __add__(self, other: int) -> Amount:
        return Amount(int(self) + int(other))

    def __radd__(self, other: int) -> Amount:
        return Amount(int(other) + int(self))

    def __sub__(self, other: int) -> Amount:
        return Amount(int(self) - int(other))

    def __rsub__(self, other: int) -> Amount:
        return Amount(int(other) - int(self))

    def __mul__(self, other: int) -> Amount:
        return Amount(int(self) * int(other))

    def __rmul__(self, other: int) -> Amount:
        return Amount(int(other) * int(self))


class _Bech32:
    """Marks bytes shown as a bech32 account address in JSON."""


BECH32 = _Bech32()

Address = Annotated[bytes, BECH32]
"""A 20-byte account address (bech32 `race1…` in JSON)."""

PubKey = bytes
"""A 32-byte ed25519 public key (hex in JSON)."""

Hash = bytes
"""A 32-byte SHA-256 digest or identifier (hex in JSON)."""
