"""validators: who signs blocks and with what power.

Power changes are queued and handed to the engine at the end of the block
(CometBFT applies them two heights later). Today power is set at genesis or by
the `authority` account with `validators/SetPower`; the Race module sets it from
Race weights once it exists.

State keys under `validators/`: `power/<pubkey>`, `pending/<pubkey>`, `authority`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from racenet.chain.codec import encode_uvarint
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, Module, ModuleKeeper, Msg, decode_uint
from racenet.chain.types import ValidatorUpdate
from racenet.crypto.address import decode_address, encode_address

NAME = "validators"
MAX_POWER = 2**60


@dataclass(frozen=True)
class SetPower(Msg):
    """Set a validator's power (0 removes it); only the authority account may send it."""

    TYPE: ClassVar[str] = "validators/SetPower"
    pub_key: bytes
    power: int

    def validate(self) -> None:
        """The key is a 32-byte ed25519 key and the power is in range."""
        if len(self.pub_key) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "validator key must be a 32-byte ed25519 public key")
        if self.power > MAX_POWER:
            raise ChainError(Code.INVALID_MESSAGE, f"power must be at most {MAX_POWER}")


class Keeper(ModuleKeeper):
    """The only reader and writer of validators keys."""

    name = NAME

    def powers(self, ctx: Context) -> list[ValidatorUpdate]:
        """The current validator set, ordered by key."""
        n = len(b"power/")
        return [ValidatorUpdate(k[n:], decode_uint(v)) for k, v in self.store(ctx).iterate(b"power/")]

    def power(self, ctx: Context, pub_key: bytes) -> int:
        """A validator's current power (0: not a validator)."""
        return self.load_uint(ctx, b"power/" + pub_key)

    def set_power(self, ctx: Context, pub_key: bytes, power: int) -> None:
        """Change a validator's power; the engine learns it at the end of the block (no-op if unchanged)."""
        if power == self.power(ctx, pub_key):
            return
        self.save_uint(ctx, b"power/" + pub_key, power)
        self.store(ctx).set(b"pending/" + pub_key, encode_uvarint(power))
        ctx.emit("validator_power", pub_key=pub_key.hex(), power=str(power))

    def set_genesis_power(self, ctx: Context, pub_key: bytes, power: int) -> None:
        """Record a genesis validator without queueing an update (the engine already has it)."""
        if len(pub_key) != 32 or not 0 < power <= MAX_POWER:
            raise ValueError("a validator needs a 32-byte key and a power in 1..2**60")
        self.save_uint(ctx, b"power/" + pub_key, power)

    def take_pending(self, ctx: Context) -> list[ValidatorUpdate]:
        """The block's queued power changes, cleared once read."""
        store = self.store(ctx)
        n = len(b"pending/")
        pending = [ValidatorUpdate(k[n:], decode_uint(v)) for k, v in store.iterate(b"pending/")]
        for update in pending:
            store.delete(b"pending/" + update.pub_key)
        return pending

    def authority(self, ctx: Context) -> bytes:
        """The account allowed to send SetPower (empty: nobody)."""
        return self.store(ctx).get(b"authority") or b""

    def set_authority(self, ctx: Context, address: bytes) -> None:
        """Name the account allowed to send SetPower."""
        self.store(ctx).set(b"authority", address)


class ValidatorsModule(Module):
    """Module wiring: genesis, SetPower, end-block updates and queries."""

    name = NAME
    messages = (SetPower,)

    def __init__(self) -> None:
        self.keeper = Keeper()

    def init_genesis(self, ctx: Context, state: dict[str, Any]) -> None:
        """Load the authority and any validators carried over from an export."""
        if state.get("authority"):
            self.keeper.set_authority(ctx, decode_address(state["authority"]))
        for entry in state.get("validators", []):
            self.keeper.set_genesis_power(ctx, bytes.fromhex(entry["pub_key"]), int(entry["power"]))

    def export_genesis(self, ctx: Context) -> dict[str, Any]:
        """Authority and the validator set."""
        authority = self.keeper.authority(ctx)
        return {
            "authority": encode_address(authority) if authority else "",
            "validators": [{"pub_key": v.pub_key.hex(), "power": v.power} for v in self.keeper.powers(ctx)],
        }

    def handle(self, ctx: Context, msg: Msg) -> bytes:
        """Execute validators/SetPower for the authority account."""
        assert isinstance(msg, SetPower)
        authority = self.keeper.authority(ctx)
        if not authority or ctx.signer != authority:
            raise ChainError(Code.UNAUTHORIZED, "only the validators authority may set validator power")
        if msg.power == 0 and len(self.keeper.powers(ctx)) <= 1:
            raise ChainError(Code.INVALID_MESSAGE, "cannot remove the last validator")
        self.keeper.set_power(ctx, msg.pub_key, msg.power)
        return b""

    def end_block(self, ctx: Context) -> list[ValidatorUpdate]:
        """Hand this block's power changes to the engine."""
        return self.keeper.take_pending(ctx)

    def query(self, ctx: Context, path: str, data: bytes) -> Any:
        """`list` (the validator set) and `authority`."""
        if path == "list":
            return [{"pub_key": v.pub_key.hex(), "power": v.power} for v in self.keeper.powers(ctx)]
        if path == "authority":
            authority = self.keeper.authority(ctx)
            return {"authority": encode_address(authority) if authority else ""}
        return super().query(ctx, path, data)
