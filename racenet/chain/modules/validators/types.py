"""validators records, genesis state and queries (no messages: power comes only from the Race)."""

from __future__ import annotations

from dataclasses import dataclass

from racenet.chain.module import GenesisState
from racenet.chain.query import NO_ARG, query

MAX_TOTAL_POWER = 2**60 - 1
"""CometBFT's bound on the validator set's total voting power (MaxInt64 / 8)."""


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
class ValidatorsGenesis(GenesisState):
    """Validators carried over from an export."""

    validators: tuple[ValidatorPower, ...] = ()

    def validate(self) -> None:
        """Keys are 32 bytes, powers positive, the total within CometBFT's bound."""
        for v in self.validators:
            if len(v.pub_key) != 32 or v.power < 1:
                raise ValueError("a validator needs a 32-byte key and a power of at least 1")
        if sum(int(v.power) for v in self.validators) > MAX_TOTAL_POWER:
            raise ValueError(f"the validators' total power exceeds {MAX_TOTAL_POWER}")


LIST = query("validators/list", NO_ARG, ValidatorSet)
