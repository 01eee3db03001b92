"""bank: balances, transfers, escrows and the supply they must add up to.

Amounts are `Amount`s in nicoin (1 icon = 10**9 nicoin), checked against u64 overflow.
Invariant: supply == accounts' balances + the fee collector + every module's escrows.
A second denom, the bridged stable asset usdt (micro-usdt; minted and burned by the pool module's bridge), has
balances and a supply of its own: usdt supply == Σ usdt balances. Fees are only ever icon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from racenet.chain.authority import require_authority
from racenet.chain.collections import ADDRESS, BYTES, STRING, Item, Record, UintItem, UintMap, pair
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import (
    Context,
    HandlerTable,
    Invariant,
    InvariantBroken,
    Module,
    ModuleKeeper,
    QueryTable,
    TxContext,
)
from racenet.chain.modules.bank.types import (
    BALANCE,
    PARAMS,
    SUPPLY,
    USDT_BALANCE,
    Balance,
    BankGenesis,
    Escrow,
    ModuleTotal,
    MsgSend,
    MsgUpdateParams,
    Params,
    Supply,
)
from racenet.crypto.address import encode_address, module_address

NAME = "bank"
FEE_COLLECTOR = module_address("fee_collector")


class Keeper(ModuleKeeper):
    """The only reader and writer of bank state; other modules call its methods."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    balances = UintMap(b"balance/", ADDRESS)
    escrows = UintMap(b"escrow/", pair(STRING, BYTES))
    supply = UintItem(b"supply")
    burned = UintItem(b"burned")
    usdt_balances = UintMap(b"usdt/", ADDRESS)  # the bridged stable denom, micro-usdt (pool module)
    usdt_supply = UintItem(b"usdt_supply")

    def required_fee(self, ctx: Context, tx_bytes: int, work: Sequence[int]) -> int:
        """The least fee of a transaction of `tx_bytes` bytes whose messages have `work` units each."""
        return self.params.get(ctx).required_fee(tx_bytes, work)

    def balance(self, ctx: Context, address: bytes) -> int:
        """Spendable nicoin of an address."""
        return self.balances.get(ctx, address)

    def escrow_balance(self, ctx: Context, module: str, escrow_id: bytes) -> int:
        """nicoin held in one escrow of a module."""
        return self.escrows.get(ctx, (module, escrow_id))

    def module_escrows(self, ctx: Context, module: str) -> list[tuple[bytes, int]]:
        """Every non-empty escrow of one module as (id, amount)."""
        return [(escrow_id, amount) for (_, escrow_id), amount in self.escrows.items(ctx, (module,))]

    def _debit(self, ctx: Context, address: bytes, amount: int) -> None:
        have = self.balances.get(ctx, address)
        if have < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"{encode_address(address)} has {have} nicoin, needs {amount}")
        self.balances.set(ctx, address, have - amount)

    def _credit(self, ctx: Context, address: bytes, amount: int) -> None:
        self.balances.set(ctx, address, self.balances.get(ctx, address) + amount)

    def _take_escrow(self, ctx: Context, module: str, escrow_id: bytes, amount: int) -> None:
        held = self.escrows.get(ctx, (module, escrow_id))
        if held < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"escrow holds {held} nicoin, needs {amount}")
        self.escrows.set(ctx, (module, escrow_id), held - amount)

    def _add_escrow(self, ctx: Context, module: str, escrow_id: bytes, amount: int) -> None:
        self.escrows.set(ctx, (module, escrow_id), self.escrows.get(ctx, (module, escrow_id)) + amount)

    def send(self, ctx: Context, sender: bytes, recipient: bytes, amount: int) -> None:
        """Transfer between two addresses; raises INSUFFICIENT_FUNDS and changes nothing."""
        self._debit(ctx, sender, amount)
        self._credit(ctx, recipient, amount)

    def collect_fee(self, ctx: Context, payer: bytes, amount: int) -> None:
        """Move a transaction's fee to the fee collector."""
        self.send(ctx, payer, FEE_COLLECTOR, amount)

    def mint(self, ctx: Context, recipient: bytes, amount: int) -> None:
        """Create new nicoin (subsidy, genesis) and credit it."""
        self._credit(ctx, recipient, amount)
        self.supply.set(ctx, self.supply.get(ctx) + amount)

    def mint_escrow(self, ctx: Context, module: str, escrow_id: bytes, amount: int) -> None:
        """Create nicoin directly inside an escrow (genesis import of open escrows)."""
        self._add_escrow(ctx, module, escrow_id, amount)
        self.supply.set(ctx, self.supply.get(ctx) + amount)

    def burn(self, ctx: Context, holder: bytes, amount: int) -> None:
        """Destroy nicoin held by `holder` (for tokenomics)."""
        self._debit(ctx, holder, amount)
        self.supply.set(ctx, self.supply.get(ctx) - amount)
        self.burned.set(ctx, self.burned.get(ctx) + amount)

    def burn_escrow(self, ctx: Context, module: str, escrow_id: bytes, amount: int) -> None:
        """Destroy nicoin held in a module's escrow (a forfeited reward)."""
        self._take_escrow(ctx, module, escrow_id, amount)
        self.supply.set(ctx, self.supply.get(ctx) - amount)
        self.burned.set(ctx, self.burned.get(ctx) + amount)

    def lock(self, ctx: Context, owner: bytes, module: str, escrow_id: bytes, amount: int) -> None:
        """Move nicoin from `owner` into a module's escrow (e.g. an inference request)."""
        self._debit(ctx, owner, amount)
        self._add_escrow(ctx, module, escrow_id, amount)

    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None:
        """Pay nicoin out of a module's escrow to `recipient` (charge or refund)."""
        self._take_escrow(ctx, module, escrow_id, amount)
        self._credit(ctx, recipient, amount)

    def move_escrow(self, ctx: Context, module: str, from_id: bytes, to_id: bytes, amount: int) -> None:
        """Move nicoin between two escrows of one module (e.g. a request's escrow to a pending reward)."""
        self._take_escrow(ctx, module, from_id, amount)
        self._add_escrow(ctx, module, to_id, amount)

    def usdt_balance(self, ctx: Context, address: bytes) -> int:
        """micro-usdt of an address."""
        return self.usdt_balances.get(ctx, address)

    def send_usdt(self, ctx: Context, sender: bytes, recipient: bytes, amount: int) -> None:
        """Move micro-usdt between two addresses; raises INSUFFICIENT_FUNDS and changes nothing."""
        have = self.usdt_balances.get(ctx, sender)
        if have < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"{encode_address(sender)} has {have} micro-usdt, needs {amount}")
        self.usdt_balances.set(ctx, sender, have - amount)
        self.usdt_balances.set(ctx, recipient, self.usdt_balances.get(ctx, recipient) + amount)

    def mint_usdt(self, ctx: Context, recipient: bytes, amount: int) -> None:
        """Create micro-usdt (an attested bridge deposit, genesis) and credit it."""
        self.usdt_balances.set(ctx, recipient, self.usdt_balances.get(ctx, recipient) + amount)
        self.usdt_supply.set(ctx, self.usdt_supply.get(ctx) + amount)

    def burn_usdt(self, ctx: Context, holder: bytes, amount: int) -> None:
        """Destroy micro-usdt held by `holder` (a bridge withdrawal); raises INSUFFICIENT_FUNDS."""
        have = self.usdt_balances.get(ctx, holder)
        if have < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"{encode_address(holder)} has {have} micro-usdt, needs {amount}")
        self.usdt_balances.set(ctx, holder, have - amount)
        self.usdt_supply.set(ctx, self.usdt_supply.get(ctx) - amount)

    def check_usdt_supply(self, ctx: Context) -> None:
        """The usdt invariant: usdt supply == Σ usdt balances."""
        held = sum(int(a) for _, a in self.usdt_balances.items(ctx))
        if held != self.usdt_supply.get(ctx):
            raise InvariantBroken(f"usdt supply {self.usdt_supply.get(ctx)} != usdt balances {held}")

    def escrowed(self, ctx: Context) -> tuple[ModuleTotal, ...]:
        """What each module's escrows hold together, by module name."""
        totals: dict[str, int] = {}
        for (module, _), amount in self.escrows.items(ctx):
            totals[module] = totals.get(module, 0) + int(amount)
        return tuple(ModuleTotal(m, a) for m, a in sorted(totals.items()))

    def check_supply(self, ctx: Context) -> None:
        """The supply invariant: supply == accounts' balances + the fee collector + every module's escrows."""
        fees = self.balances.get(ctx, FEE_COLLECTOR)
        accounts = sum(int(a) for address, a in self.balances.items(ctx) if address != FEE_COLLECTOR)
        escrowed = self.escrowed(ctx)
        held = accounts + fees + sum(e.amount for e in escrowed)
        if held != self.supply.get(ctx):
            locked = ", ".join(f"{e.module} escrows {e.amount}" for e in escrowed) or "no escrows"
            supply = self.supply.get(ctx)
            raise InvariantBroken(f"supply {supply} != accounts {accounts} + fee collector {fees} + {locked}")

    def handle_send(self, ctx: TxContext, msg: MsgSend) -> None:
        """bank/Send: move nicoin from the signer to the recipient."""
        self.send(ctx, ctx.tx.signer, msg.to, msg.amount)
        sender, recipient = encode_address(ctx.tx.signer), encode_address(msg.to)
        ctx.emit("transfer", sender=sender, recipient=recipient, amount=str(msg.amount))

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """bank/UpdateParams: governance replaces the fee schedule."""
        require_authority(ctx, "change bank params")
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    def query_balance(self, ctx: Context, address: bytes) -> Balance:
        """An address's spendable balance."""
        return Balance(address, self.balances.get(ctx, address))

    def query_usdt_balance(self, ctx: Context, address: bytes) -> Balance:
        """An address's micro-usdt."""
        return Balance(address, self.usdt_balances.get(ctx, address))

    def query_supply(self, ctx: Context, _: None) -> Supply:
        """Total supply, total burned, and the locked part: fee collector and module escrows."""
        fees = self.balances.get(ctx, FEE_COLLECTOR)
        return Supply(self.supply.get(ctx), self.burned.get(ctx), fees, self.escrowed(ctx))

    def query_params(self, ctx: Context, _: None) -> Params:
        """The bank parameters."""
        return self.params.get(ctx)


class BankModule(Module[Keeper, BankGenesis]):
    """Module wiring: messages, genesis, queries and the supply invariant."""

    name = NAME
    genesis_type = BankGenesis
    handlers: ClassVar[HandlerTable] = {MsgSend: Keeper.handle_send, MsgUpdateParams: Keeper.handle_update_params}
    queries: ClassVar[QueryTable] = {
        BALANCE: Keeper.query_balance,
        USDT_BALANCE: Keeper.query_usdt_balance,
        SUPPLY: Keeper.query_supply,
        PARAMS: Keeper.query_params,
    }

    def init_genesis(self, ctx: Context, state: BankGenesis) -> None:
        """Set params, then mint every genesis balance and escrow."""
        self.keeper.params.set(ctx, state.params)
        for balance in state.balances:
            self.keeper.mint(ctx, balance.address, balance.amount)
        for escrow in state.escrows:
            self.keeper.mint_escrow(ctx, escrow.module, escrow.id, escrow.amount)
        for balance in state.usdt_balances:
            self.keeper.mint_usdt(ctx, balance.address, balance.amount)

    def export_genesis(self, ctx: Context) -> BankGenesis:
        """Params, balances and escrows (supply is derived from them on import)."""
        k = self.keeper
        return BankGenesis(
            params=k.params.get(ctx),
            balances=tuple(Balance(a, n) for a, n in k.balances.items(ctx)),
            escrows=tuple(Escrow(m, i, n) for (m, i), n in k.escrows.items(ctx)),
            usdt_balances=tuple(Balance(a, n) for a, n in k.usdt_balances.items(ctx)),
        )

    def invariants(self) -> Mapping[str, Invariant]:
        """supply: supply equals balances plus escrows; usdt_supply: the usdt supply equals its balances."""
        return {"supply": self.keeper.check_supply, "usdt_supply": self.keeper.check_usdt_supply}
