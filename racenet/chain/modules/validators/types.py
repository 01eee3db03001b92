"""validators messages, records, genesis state and queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import NO_ARG, query
from racenet.chain.scalars import Address

MAX_TOTAL_POWER = 2**60 - 1
"""CometBFT's bound on the validator set's total voting power (MaxInt64 / 8)."""


@dataclass(frozen=True)
class MsgSetPower(Msg):
    """Set a validator's power (0 removes it); only the authority account may send it."""

    TYPE: ClassVar[str] = "validators/SetPower"
    pub_key: bytes
    power: int

    def validate(self) -> None:
        """The key is a 32-byte ed25519 key and the power is in range."""
        if len(self.pub_key) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "validator key must be a 32-byte ed25519 public key")
        if self.power > MAX_TOTAL_POWER:
            raise ChainError(Code.INVALID_MESSAGE, f"power must be at most {MAX_TOTAL_POWER}")


@dataclass(frozen=True)
class ValidatorPower:
    """A validator's ed25519 consensus key and its voting power."""

    pub_key: bytes
    power: int


@dataclass(frozen=True)
class ValidatorSet:
    """The validator set, ordered by key."""

    validators: tuple[ValidatorPower, ...]


@dataclass(frozen=True)
class Authority:
    """The account allowed to send SetPower (None: nobody)."""

    authority: Address | None


@dataclass(frozen=True)
class ValidatorsGenesis(GenesisState):
    """The SetPower authority and validators carried over from an export."""

    authority: Address | None = None
    validators: tuple[ValidatorPower, ...] = ()

    def validate(self) -> None:
        """Keys are 32 bytes, powers positive, the total within CometBFT's bound."""
        for v in self.validators:
            if len(v.pub_key) != 32 or v.power < 1:
                raise ValueError("a validator needs a 32-byte key and a power of at least 1")
        if sum(int(v.power) for v in self.validators) > MAX_TOTAL_POWER:
            raise ValueError(f"the validators' total power exceeds {MAX_TOTAL_POWER}")


LIST = query("validators/list", NO_ARG, ValidatorSet)
AUTHORITY = query("validators/authority", NO_ARG, Authority)
