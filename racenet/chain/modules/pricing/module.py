"""pricing: the unit-of-compute price, voted by Race weight (whitepaper Appendix J).

Each Race weight holder may vote a price per unit of compute (`MsgVotePrice`); a vote stands until the
holder replaces it. At each epoch end (the last block of a Race cycle, before the tally replaces the weights)
the weighted median of the votes, weighed by the ending cycle's Race weights, becomes the price of the next
cycle; a holder that never voted counts with the current price (the genesis price at first).

Weighted median: order the holders' prices; it is the lowest price p at which the weight of the prices ≤ p
reaches half of the total weight (2 × cumulative ≥ total). Equal prices pool their weight; an exact even
split between two prices gives the lower one. With no weight at all the price stays.

Who could abuse it: a sybil with many keys has only the Race weight its compute earned, however split; an
account without weight is refused; a vote moves the median only with the weight on its side, so only holders
of half the weight can set the price, and not beyond [MIN_UNIT_PRICE, MAX_UNIT_PRICE].
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Protocol

from racenet.chain.collections import ADDRESS, Item, Record, UintMap
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, HandlerTable, Module, ModuleKeeper, QueryTable, TxContext, isolated
from racenet.chain.modules.pricing.types import (
    GENESIS_UNIT_PRICE,
    MODELS,
    PRICE,
    VOTES,
    ModelPrice,
    ModelPrices,
    MsgVotePrice,
    PriceVote,
    PricingGenesis,
    UnitPrice,
    VoteInfo,
    Votes,
)
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.scalars import Amount
from racenet.crypto.address import encode_address

NAME = "pricing"


class RaceKeeper(Protocol):
    """What pricing needs of race: the cycle schedule (epochs) and the weights."""

    def schedule(self, ctx: Context) -> Schedule: ...
    def weight(self, ctx: Context, address: bytes) -> int: ...
    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]: ...


class ModelRegistry(Protocol):
    """What pricing needs of inference: the registered models and their units of compute per token."""

    def registered_models(self, ctx: Context) -> list[tuple[str, int]]: ...


def weighted_median(votes: Iterable[tuple[int, int]]) -> int | None:
    """The lowest price whose cumulative weight (of prices at or below it) reaches half of the total weight;
    None if no vote carries weight."""
    ranked = sorted((price, weight) for price, weight in votes if weight > 0)
    total = sum(weight for _, weight in ranked)
    cumulative = 0
    for price, weight in ranked:
        cumulative += weight
        if 2 * cumulative >= total:
            return price
    return None


class Keeper(ModuleKeeper):
    """The only reader and writer of pricing state."""

    name = NAME
    price = Item(b"price", Record(UnitPrice), UnitPrice(GENESIS_UNIT_PRICE, 0))
    votes = UintMap(b"vote/", ADDRESS)

    def __init__(self, race: RaceKeeper, registry: ModelRegistry) -> None:
        self.race = race
        self.registry = registry

    def unit_price(self, ctx: Context) -> Amount:
        """The current price of a unit of compute, in nicoin."""
        return self.price.get(ctx).price

    def token_price(self, ctx: Context, units_per_token: int) -> Amount:
        """nicoin per token of a model with `units_per_token`: the unit price × its units (checked u64)."""
        return self.unit_price(ctx) * units_per_token

    def handle_vote_price(self, ctx: TxContext, msg: MsgVotePrice) -> None:
        """pricing/VotePrice: record (or replace) a weight holder's vote."""
        if self.race.weight(ctx, ctx.tx.signer) <= 0:
            raise ChainError(Code.UNAUTHORIZED, "only a holder of Race weight may vote a price")
        self.votes.set(ctx, ctx.tx.signer, msg.price)
        ctx.emit("price_vote", voter=encode_address(ctx.tx.signer), price=str(msg.price))

    def epoch_median(self, ctx: Context) -> Amount:
        """The weighted median of every weight holder's vote (non-voters at the current price); the current
        price if nobody holds weight."""
        current = self.unit_price(ctx)
        votes = [(self.votes.get(ctx, a) or current, w) for a, w in self.race.all_weights(ctx)]
        median = weighted_median(votes)
        return current if median is None else Amount(median)

    def end_epoch(self, ctx: Context) -> None:
        """At a Race cycle's last block, make the weighted median the price of the next cycle."""
        schedule = self.race.schedule(ctx)
        cycle = schedule.cycle(ctx.block.height)
        if ctx.block.height != schedule.tally_height(cycle):
            return
        with isolated(ctx, NAME, f"unit price of cycle {cycle + 1}") as item:
            price = self.epoch_median(item)
            self.price.set(item, UnitPrice(price, cycle + 1))
            item.emit("unit_price", cycle=str(cycle + 1), price=str(price))

    def query_price(self, ctx: Context, _: None) -> UnitPrice:
        """The current unit price and the cycle it was set for."""
        return self.price.get(ctx)

    def query_votes(self, ctx: Context, _: None) -> Votes:
        """Every standing vote with its voter's weight, and the median they would give now."""
        votes = [VoteInfo(a, p, self.race.weight(ctx, a)) for a, p in self.votes.items(ctx)]
        return Votes(tuple(votes), self.epoch_median(ctx))

    def query_models(self, ctx: Context, _: None) -> ModelPrices:
        """Every registered model's price per token at the current unit price."""
        models = [ModelPrice(m, u, self.token_price(ctx, u)) for m, u in self.registry.registered_models(ctx)]
        return ModelPrices(self.unit_price(ctx), tuple(models))


class PricingModule(Module[Keeper, PricingGenesis]):
    """Module wiring: the vote message, the epoch-end hook and the price queries."""

    name = NAME
    genesis_type = PricingGenesis
    handlers: ClassVar[HandlerTable] = {MsgVotePrice: Keeper.handle_vote_price}
    queries: ClassVar[QueryTable] = {
        PRICE: Keeper.query_price,
        VOTES: Keeper.query_votes,
        MODELS: Keeper.query_models,
    }

    def init_genesis(self, ctx: Context, state: PricingGenesis) -> None:
        """The unit price, its cycle and the standing votes."""
        self.keeper.price.set(ctx, UnitPrice(state.unit_price, state.cycle))
        for vote in state.votes:
            self.keeper.votes.set(ctx, vote.address, vote.price)

    def export_genesis(self, ctx: Context) -> PricingGenesis:
        """Everything init_genesis loads."""
        k = self.keeper
        current = k.price.get(ctx)
        votes = tuple(PriceVote(a, p) for a, p in k.votes.items(ctx))
        return PricingGenesis(unit_price=current.price, cycle=current.cycle, votes=votes)

    def end_block(self, ctx: Context) -> None:
        """Set the next cycle's unit price at a cycle's last block."""
        self.keeper.end_epoch(ctx)
