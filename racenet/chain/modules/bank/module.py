"""bank: balances, transfers, escrows and the supply they must add up to.

Amounts are integers in nicoin (1 icon = 10**9 nicoin). State keys, all under `bank/`:
`balance/<address>`, `escrow/<module>/<id>`, `supply`, `burned`, `params`.
Invariant: supply == sum of balances + sum of escrows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, Module, ModuleKeeper, Msg, decode_uint, load_params
from racenet.crypto.address import decode_address, encode_address, module_address

NAME = "bank"
FEE_COLLECTOR = module_address("fee_collector")
NICOIN_PER_ICON = 10**9


@dataclass(frozen=True)
class Params:
    """bank parameters: the minimum fee every transaction pays, in nicoin."""

    min_fee: int = 1_000


@dataclass(frozen=True)
class Send(Msg):
    """Move `amount` nicoin from the signer to `to`."""

    TYPE: ClassVar[str] = "bank/Send"
    to: bytes
    amount: int

    def validate(self) -> None:
        """Recipient is a 20-byte address and the amount is positive."""
        if len(self.to) != 20:
            raise ChainError(Code.INVALID_MESSAGE, "recipient must be a 20-byte address")
        if self.amount <= 0:
            raise ChainError(Code.INVALID_MESSAGE, "amount must be positive")


class Keeper(ModuleKeeper):
    """The only reader and writer of bank keys; other modules call these methods."""

    name = NAME

    def params(self, ctx: Context) -> Params:
        """Current bank parameters."""
        return self.load(ctx, b"params", Params) or Params()

    def set_params(self, ctx: Context, params: Params) -> None:
        """Replace the bank parameters."""
        self.save(ctx, b"params", params)

    def balance(self, ctx: Context, address: bytes) -> int:
        """Spendable nicoin of an address."""
        return self.load_uint(ctx, b"balance/" + address)

    def supply(self, ctx: Context) -> int:
        """Total nicoin in existence (balances plus escrows)."""
        return self.load_uint(ctx, b"supply")

    def burned(self, ctx: Context) -> int:
        """Total nicoin ever burned."""
        return self.load_uint(ctx, b"burned")

    def escrow_balance(self, ctx: Context, module: str, escrow_id: bytes) -> int:
        """nicoin held in one escrow of a module."""
        return self.load_uint(ctx, _escrow_key(module, escrow_id))

    def _debit(self, ctx: Context, address: bytes, amount: int) -> None:
        have = self.balance(ctx, address)
        if have < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"{encode_address(address)} has {have} nicoin, needs {amount}")
        self.save_uint(ctx, b"balance/" + address, have - amount)

    def _credit(self, ctx: Context, address: bytes, amount: int) -> None:
        self.save_uint(ctx, b"balance/" + address, self.balance(ctx, address) + amount)

    def send(self, ctx: Context, sender: bytes, recipient: bytes, amount: int) -> None:
        """Transfer between two addresses; raises INSUFFICIENT_FUNDS and changes nothing."""
        self._debit(ctx, sender, amount)
        self._credit(ctx, recipient, amount)

    def mint(self, ctx: Context, recipient: bytes, amount: int) -> None:
        """Create new nicoin (subsidy, genesis) and credit it."""
        self._credit(ctx, recipient, amount)
        self.save_uint(ctx, b"supply", self.supply(ctx) + amount)

    def mint_escrow(self, ctx: Context, module: str, escrow_id: bytes, amount: int) -> None:
        """Create nicoin directly inside an escrow (genesis import of open escrows)."""
        key = _escrow_key(module, escrow_id)
        self.save_uint(ctx, key, self.load_uint(ctx, key) + amount)
        self.save_uint(ctx, b"supply", self.supply(ctx) + amount)

    def burn(self, ctx: Context, holder: bytes, amount: int) -> None:
        """Destroy nicoin held by `holder`."""
        self._debit(ctx, holder, amount)
        self.save_uint(ctx, b"supply", self.supply(ctx) - amount)
        self.save_uint(ctx, b"burned", self.burned(ctx) + amount)

    def lock(self, ctx: Context, owner: bytes, module: str, escrow_id: bytes, amount: int) -> None:
        """Move nicoin from `owner` into a module's escrow (e.g. an inference request)."""
        self._debit(ctx, owner, amount)
        key = _escrow_key(module, escrow_id)
        self.save_uint(ctx, key, self.load_uint(ctx, key) + amount)

    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None:
        """Pay nicoin out of a module's escrow to `recipient` (charge or refund)."""
        key = _escrow_key(module, escrow_id)
        held = self.load_uint(ctx, key)
        if held < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"escrow holds {held} nicoin, needs {amount}")
        self.save_uint(ctx, key, held - amount)
        self._credit(ctx, recipient, amount)

    def move_escrow(self, ctx: Context, module: str, from_id: bytes, to_id: bytes, amount: int) -> None:
        """Move nicoin between two escrows of one module (e.g. a request's escrow to a pending reward)."""
        source, target = _escrow_key(module, from_id), _escrow_key(module, to_id)
        held = self.load_uint(ctx, source)
        if held < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"escrow holds {held} nicoin, needs {amount}")
        self.save_uint(ctx, source, held - amount)
        self.save_uint(ctx, target, self.load_uint(ctx, target) + amount)

    def balances(self, ctx: Context) -> list[tuple[bytes, int]]:
        """Every non-zero balance, ordered by address."""
        return [(k[len(b"balance/") :], decode_uint(v)) for k, v in self.store(ctx).iterate(b"balance/")]

    def escrows(self, ctx: Context) -> list[tuple[str, bytes, int]]:
        """Every non-empty escrow as (module, id, amount)."""
        out = []
        for k, v in self.store(ctx).iterate(b"escrow/"):
            module, _, escrow_id = k[len(b"escrow/") :].partition(b"/")
            out.append((module.decode(), escrow_id, decode_uint(v)))
        return out

    def check_supply(self, ctx: Context) -> None:
        """Assert the supply invariant: supply == balances + escrows."""
        held = sum(a for _, a in self.balances(ctx)) + sum(a for _, _, a in self.escrows(ctx))
        if held != self.supply(ctx):
            raise AssertionError(f"supply invariant broken: supply {self.supply(ctx)} != held {held}")


def _escrow_key(module: str, escrow_id: bytes) -> bytes:
    return b"escrow/" + module.encode() + b"/" + escrow_id


class BankModule(Module):
    """Module wiring: messages, genesis and queries for bank."""

    name = NAME
    messages = (Send,)

    def __init__(self) -> None:
        self.keeper = Keeper()

    def init_genesis(self, ctx: Context, state: dict[str, Any]) -> None:
        """Set params, then mint every genesis balance and escrow."""
        self.keeper.set_params(ctx, load_params(Params, state.get("params", {})))
        for entry in state.get("balances", []):
            self.keeper.mint(ctx, decode_address(entry["address"]), _amount(entry["amount"]))
        for entry in state.get("escrows", []):
            self.keeper.mint_escrow(ctx, entry["module"], bytes.fromhex(entry["id"]), _amount(entry["amount"]))

    def export_genesis(self, ctx: Context) -> dict[str, Any]:
        """Params, balances and escrows (supply is derived from them on import)."""
        k = self.keeper
        return {
            "params": asdict(k.params(ctx)),
            "balances": [{"address": encode_address(a), "amount": n} for a, n in k.balances(ctx)],
            "escrows": [{"module": m, "id": i.hex(), "amount": n} for m, i, n in k.escrows(ctx)],
        }

    def handle(self, ctx: Context, msg: Msg) -> bytes:
        """Execute bank/Send."""
        assert isinstance(msg, Send)
        self.keeper.send(ctx, ctx.signer, msg.to, msg.amount)
        sender, recipient = encode_address(ctx.signer), encode_address(msg.to)
        ctx.emit("transfer", sender=sender, recipient=recipient, amount=str(msg.amount))
        return b""

    def query(self, ctx: Context, path: str, data: bytes) -> Any:
        """`balance` (data: bech32 address), `supply`, `params`."""
        if path == "balance":
            address = decode_address(data.decode())
            return {"address": encode_address(address), "amount": self.keeper.balance(ctx, address)}
        if path == "supply":
            return {"supply": self.keeper.supply(ctx), "burned": self.keeper.burned(ctx)}
        if path == "params":
            return asdict(self.keeper.params(ctx))
        return super().query(ctx, path, data)


def _amount(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"amount must be a non-negative integer (nicoin), got {value!r}")
    return value
