"""pricing messages, records, genesis state and queries (whitepaper Appendix J).

Prices are nicoin per unit of compute; a model's price per token is that × its units of compute per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import NO_ARG, query
from racenet.chain.scalars import Address, Amount

MIN_UNIT_PRICE = 1
"""A unit of compute is never free: a zero price would make every request's escrow, and so its spam cost, 0."""
MAX_UNIT_PRICE = 10**9
"""1 icon per unit of compute. A request escrows (prompt + max tokens) × units per token × price: with the default
limits (34,816 tokens) a model of up to 529,000 units per token stays below 2^64, and any product beyond u64 is
refused by `Amount`'s checked arithmetic as `out_of_range` for that one Start."""
GENESIS_UNIT_PRICE = Amount(1_000)


def check_unit_price(price: int) -> None:
    """Raise ChainError(INVALID_MESSAGE) unless `price` is within [MIN_UNIT_PRICE, MAX_UNIT_PRICE] nicoin."""
    if not MIN_UNIT_PRICE <= price <= MAX_UNIT_PRICE:
        raise ChainError(
            Code.INVALID_MESSAGE, f"a unit price is {MIN_UNIT_PRICE} to {MAX_UNIT_PRICE} nicoin, not {price}"
        )


@dataclass(frozen=True)
class MsgVotePrice(Msg):
    """A Race weight holder proposes the unit-of-compute price (nicoin); it replaces the holder's previous vote."""

    TYPE: ClassVar[str] = "pricing/VotePrice"
    price: int

    def validate(self) -> None:
        """A price within the bounds."""
        check_unit_price(self.price)


@dataclass(frozen=True)
class UnitPrice:
    """The unit-of-compute price in nicoin and the Race cycle it was set for (it holds until a cycle end sets
    the next)."""

    price: Amount
    cycle: int


@dataclass(frozen=True)
class PriceVote:
    """A provider's standing vote: nicoin per unit of compute."""

    address: Address
    price: Amount


@dataclass(frozen=True)
class VoteInfo:
    """A provider's vote and its Race weight now (a vote of an account without weight counts for nothing)."""

    address: Address
    price: Amount
    weight: int


@dataclass(frozen=True)
class Votes:
    """Every standing vote, and the price they would set if the cycle ended now (non-voters at the current price)."""

    votes: tuple[VoteInfo, ...]
    median: int


@dataclass(frozen=True)
class ModelPrice:
    """A registered model: its units of compute per token and its price per token in nicoin."""

    id: str
    units_per_token: int
    price_per_token: int


@dataclass(frozen=True)
class ModelPrices:
    """The current unit price and every registered model's price per token."""

    unit_price: int
    models: tuple[ModelPrice, ...]


@dataclass(frozen=True)
class PricingGenesis(GenesisState):
    """The unit price (at genesis: the network's parameter, the price of the first cycle), the cycle it was set
    for, and the standing votes."""

    unit_price: Amount = GENESIS_UNIT_PRICE
    cycle: int = 0
    votes: tuple[PriceVote, ...] = ()

    def validate(self) -> None:
        """Prices within the bounds; one vote per address."""
        for price in (self.unit_price, *(v.price for v in self.votes)):
            if not MIN_UNIT_PRICE <= price <= MAX_UNIT_PRICE:
                raise ValueError(f"unit prices are {MIN_UNIT_PRICE} to {MAX_UNIT_PRICE} nicoin, not {price}")
        voters = [v.address for v in self.votes]
        if any(len(a) != 20 for a in voters) or len(set(voters)) != len(voters):
            raise ValueError("votes are by distinct 20-byte addresses")


PRICE = query("pricing/price", NO_ARG, UnitPrice)
VOTES = query("pricing/votes", NO_ARG, Votes)
MODELS = query("pricing/models", NO_ARG, ModelPrices)
