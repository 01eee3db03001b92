"""validators: who signs blocks and with what power.

Power changes are queued and handed to the engine after the block's end-block hooks
(CometBFT applies them two heights later). The Race module sets power from Race weights at
each tally; the `authority` account may also set it with `validators/SetPower` (devnet use).
The total power never exceeds CometBFT's bound (`MAX_TOTAL_POWER`).
"""

from __future__ import annotations

from typing import ClassVar

from racenet.chain.collections import PUBKEY, RAW, UVARINT, Item, Map, UintMap
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, HandlerTable, Module, ModuleKeeper, QueryTable, TxContext
from racenet.chain.modules.validators.types import (
    AUTHORITY,
    LIST,
    MAX_TOTAL_POWER,
    Authority,
    MsgSetPower,
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
    authority = Item(b"authority", RAW, b"")

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

    def handle_set_power(self, ctx: TxContext, msg: MsgSetPower) -> None:
        """validators/SetPower, for the authority account only."""
        authority = self.authority.get(ctx)
        if not authority or ctx.tx.signer != authority:
            raise ChainError(Code.UNAUTHORIZED, "only the validators authority may set validator power")
        if msg.power == 0 and len(self.powers.keys(ctx)) <= 1:
            raise ChainError(Code.INVALID_MESSAGE, "cannot remove the last validator")
        others = sum(int(p) for k, p in self.powers.items(ctx) if k != msg.pub_key)
        if others + msg.power > MAX_TOTAL_POWER:
            raise ChainError(Code.INVALID_MESSAGE, f"the total power would exceed {MAX_TOTAL_POWER}")
        self.set_power(ctx, msg.pub_key, msg.power)

    def query_list(self, ctx: Context, _: None) -> ValidatorSet:
        """The validator set."""
        return ValidatorSet(tuple(ValidatorPower(k, p) for k, p in self.powers.items(ctx)))

    def query_authority(self, ctx: Context, _: None) -> Authority:
        """The SetPower authority."""
        return Authority(self.authority.get(ctx) or None)


class ValidatorsModule(Module[Keeper, ValidatorsGenesis]):
    """Module wiring: genesis, SetPower and queries."""

    name = NAME
    genesis_type = ValidatorsGenesis
    handlers: ClassVar[HandlerTable] = {MsgSetPower: Keeper.handle_set_power}
    queries: ClassVar[QueryTable] = {LIST: Keeper.query_list, AUTHORITY: Keeper.query_authority}

    def init_genesis(self, ctx: Context, state: ValidatorsGenesis) -> None:
        """Load the authority and any validators carried over from an export."""
        if state.authority:
            self.keeper.authority.set(ctx, state.authority)
        for v in state.validators:
            self.keeper.set_genesis_power(ctx, v.pub_key, v.power)

    def export_genesis(self, ctx: Context) -> ValidatorsGenesis:
        """Authority and the validator set."""
        validators = tuple(ValidatorPower(k, p) for k, p in self.keeper.powers.items(ctx))
        return ValidatorsGenesis(authority=self.keeper.authority.get(ctx) or None, validators=validators)
