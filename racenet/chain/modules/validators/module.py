"""validators: who signs blocks and with what power.

Power changes are queued and handed to the engine after the block's end-block hooks
(CometBFT applies them two heights later). Power comes only from the Race: the Race module sets
it from Race weights at each tally, and no account or proposal can set it otherwise.
The total power never exceeds CometBFT's bound (`MAX_TOTAL_POWER`).
"""

from __future__ import annotations

from typing import ClassVar

from racenet.chain.collections import PUBKEY, UVARINT, Map, UintMap
from racenet.chain.module import Context, Module, ModuleKeeper, QueryTable
from racenet.chain.modules.validators.types import (
    LIST,
    MAX_TOTAL_POWER,
    ValidatorPower,
    ValidatorSet,
    ValidatorsGenesis,
)
from racenet.chain.types import ValidatorUpdate

NAME = "validators"


class Keeper(ModuleKeeper):
    """The only reader and writer of validators state."""

    name = NAME
    powers = UintMap(b"power/", PUBKEY)
    pending = Map(b"pending/", PUBKEY, UVARINT)

    def validator_set(self, ctx: Context) -> list[ValidatorUpdate]:
        """The current validator set, ordered by key."""
        return [ValidatorUpdate(k, p) for k, p in self.powers.items(ctx)]

    def power(self, ctx: Context, pub_key: bytes) -> int:
        """A validator's current power (0: not a validator)."""
        return self.powers.get(ctx, pub_key)

    def set_power(self, ctx: Context, pub_key: bytes, power: int) -> None:
        """Change a validator's power; the engine learns it after the block (no-op if unchanged)."""
        if power == self.powers.get(ctx, pub_key):
            return
        self.powers.set(ctx, pub_key, power)
        self.pending.set(ctx, pub_key, power)
        ctx.emit("validator_power", pub_key=pub_key.hex(), power=str(power))

    def set_genesis_power(self, ctx: Context, pub_key: bytes, power: int) -> None:
        """Record a genesis validator without queueing an update (the engine already has it)."""
        if len(pub_key) != 32 or not 0 < power <= MAX_TOTAL_POWER:
            raise ValueError(f"a validator needs a 32-byte key and a power in 1..{MAX_TOTAL_POWER}")
        self.powers.set(ctx, pub_key, power)

    def take_pending(self, ctx: Context) -> list[ValidatorUpdate]:
        """The block's queued power changes, cleared once read."""
        pending = [ValidatorUpdate(k, p) for k, p in self.pending.items(ctx)]
        self.pending.clear(ctx)
        return pending

    def query_list(self, ctx: Context, _: None) -> ValidatorSet:
        """The validator set."""
        return ValidatorSet(tuple(ValidatorPower(k, p) for k, p in self.powers.items(ctx)))


class ValidatorsModule(Module[Keeper, ValidatorsGenesis]):
    """Module wiring: genesis and the validator set query (no messages: power comes only from the Race)."""

    name = NAME
    genesis_type = ValidatorsGenesis
    queries: ClassVar[QueryTable] = {LIST: Keeper.query_list}

    def init_genesis(self, ctx: Context, state: ValidatorsGenesis) -> None:
        """Load any validators carried over from an export."""
        for v in state.validators:
            self.keeper.set_genesis_power(ctx, v.pub_key, v.power)

    def export_genesis(self, ctx: Context) -> ValidatorsGenesis:
        """The validator set."""
        validators = tuple(ValidatorPower(k, p) for k, p in self.keeper.powers.items(ctx))
        return ValidatorsGenesis(validators=validators)
