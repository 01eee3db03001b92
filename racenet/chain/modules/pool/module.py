"""pool: the provider liquidity pool, 120M icon sold in phases against bridged usdt (whitepaper Appendix E).

The pool account (`POOL_ACCOUNT`) holds the icon still for sale: the rest of the current phase and every later
phase in full, so the icon left in the current phase is its balance minus the later phases' sizes. `MsgBuy` pays
usdt for icon at the current phase's price; a purchase that empties a phase goes on in the next one at its
price (the next phase opens only when the current one sells out). `MsgSell` lets a provider (a holder of Race
weight) sell icon back at the latest achieved price, that of the last phase sold out (phase 1's before any has),
paid from the pool's usdt; the icon refills the current phase, to be sold again at its price. Not the open
phase's price: nothing has sold at it yet, and a buyer who empties a phase could sell straight back at it for a
sure profit out of the pool's usdt.

Rounding, always against the trader (docs/pool.md): a buyer pays for each phase's part its exact cost rounded up
to the micro-usdt and receives the whole nicoin the payment covers, rounded down; a seller receives the exact
value rounded down. Amounts: icon in nicoin, usdt in micro-usdt, prices in micro-usdt per icon.

The bridge account (a param) mints usdt on attested external deposits, each deposit id once; any holder burns
usdt by a withdrawal that the bridge pays out off-chain. The bridge itself is not part of this chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from racenet.chain.authority import require_authority
from racenet.chain.codec import encode
from racenet.chain.collections import STRING, U64, Item, Map, Record, UintItem
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
from racenet.chain.modules.pool.types import (
    ICON,
    PARAMS,
    STATE,
    WITHDRAWALS,
    Deposit,
    MsgBridgeDeposit,
    MsgBridgeWithdraw,
    MsgBuy,
    MsgSell,
    MsgUpdateParams,
    Params,
    Phase,
    PoolGenesis,
    PoolState,
    Trade,
    Withdrawal,
    Withdrawals,
)
from racenet.chain.modules.tokenomics.types import LIQUIDITY_POOL_ACCOUNT
from racenet.chain.scalars import Amount
from racenet.crypto.address import encode_address

NAME = "pool"
POOL_ACCOUNT = LIQUIDITY_POOL_ACCOUNT
"""The module account that holds the pool's icon (the tokenomics allocation: 120M icon) and the usdt it took in."""


class RaceKeeper(Protocol):
    """What the pool needs of the Race: who is a provider."""

    def weight(self, ctx: Context, address: bytes) -> int: ...


class BankKeeper(Protocol):
    """What the pool needs of bank: icon and usdt balances, transfers, and usdt mint and burn."""

    def balance(self, ctx: Context, address: bytes) -> int: ...
    def send(self, ctx: Context, sender: bytes, recipient: bytes, amount: int) -> None: ...
    def usdt_balance(self, ctx: Context, address: bytes) -> int: ...
    def send_usdt(self, ctx: Context, sender: bytes, recipient: bytes, amount: int) -> None: ...
    def mint_usdt(self, ctx: Context, recipient: bytes, amount: int) -> None: ...
    def burn_usdt(self, ctx: Context, holder: bytes, amount: int) -> None: ...


@dataclass(frozen=True)
class Fill:
    """What a purchase gets: nicoin bought, micro-usdt paid, and the phase open afterwards (0-based)."""

    icon: int
    usdt: int
    phase: int


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def later_stock(phases: Sequence[Phase], phase: int) -> int:
    """nicoin the phases after `phase` offer in full."""
    return sum(int(p.size) for p in phases[phase + 1 :])


def quote_buy(phases: Sequence[Phase], phase: int, stock: int, budget: int) -> Fill:
    """The purchase `budget` micro-usdt makes from a pool holding `stock` nicoin in `phase`: each phase's part at
    its price, its cost rounded up; a part that does not empty its phase gets the nicoin its budget covers,
    rounded down, and ends the purchase."""
    # plain ints, not Amounts: a phase's value in nicoin × micro-usdt per icon, or a budget × 10^9, exceeds u64
    left, budget = max(int(stock) - later_stock(phases, phase), 0), int(budget)
    icon = paid = 0
    while True:
        price = int(phases[phase].price)
        whole = _ceil_div(left * price, ICON)
        if budget - paid >= whole:
            take, pay = left, whole
        else:
            take = (budget - paid) * ICON // price
            pay = _ceil_div(take * price, ICON)
        icon, paid, left = icon + take, paid + pay, left - take
        if left > 0 or phase + 1 == len(phases):
            return Fill(icon, paid, phase)
        phase, left = phase + 1, int(phases[phase + 1].size)


def achieved_price(phases: Sequence[Phase], phase: int) -> int:
    """The latest achieved price while `phase` is open: the last sold-out phase's (the first phase's before)."""
    return int(phases[max(int(phase) - 1, 0)].price)


def sale_value(price: int, icon: int) -> int:
    """micro-usdt paid for `icon` nicoin sold back at `price`: the exact value rounded down."""
    return int(icon) * int(price) // ICON


class Keeper(ModuleKeeper):
    """The only reader and writer of pool state; its icon and usdt live in bank under `POOL_ACCOUNT`."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    phase = UintItem(b"phase")
    deposits = Map(b"deposit/", STRING, Record(Deposit))
    withdrawals = Map(b"withdrawal/", U64, Record(Withdrawal))
    last_withdrawal = UintItem(b"last_withdrawal")

    def __init__(self, bank: BankKeeper, race: RaceKeeper) -> None:
        self.bank = bank
        self.race = race

    def handle_buy(self, ctx: TxContext, msg: MsgBuy) -> bytes:
        """pool/Buy: pay usdt, receive icon at the phase prices, opening the next phase when one sells out."""
        phases = self.params.get(ctx).phases
        stock = self.bank.balance(ctx, POOL_ACCOUNT)
        fill = quote_buy(phases, self.phase.get(ctx), stock, msg.usdt)
        if fill.icon == 0:
            reason = "the pool has sold all its icon" if stock == 0 else f"{msg.usdt} micro-usdt buys no nicoin"
            raise ChainError(Code.INSUFFICIENT_FUNDS, reason)
        if fill.icon < msg.min_icon:
            raise ChainError(
                Code.OUT_OF_RANGE,
                f"{msg.usdt} micro-usdt buys {fill.icon} nicoin now, less than the {msg.min_icon} asked",
            )
        self.bank.send_usdt(ctx, ctx.tx.signer, POOL_ACCOUNT, fill.usdt)
        self.bank.send(ctx, POOL_ACCOUNT, ctx.tx.signer, fill.icon)
        self.phase.set(ctx, fill.phase)
        buyer = encode_address(ctx.tx.signer)
        ctx.emit("pool_buy", buyer=buyer, icon=str(fill.icon), usdt=str(fill.usdt), phase=str(fill.phase + 1))
        return encode(Trade(icon=Amount(fill.icon), usdt=Amount(fill.usdt)))

    def handle_sell(self, ctx: TxContext, msg: MsgSell) -> bytes:
        """pool/Sell: a provider sells icon back at the latest achieved price, paid from the pool's usdt; it refills
        the open phase."""
        if self.race.weight(ctx, ctx.tx.signer) <= 0:
            raise ChainError(Code.UNAUTHORIZED, "only providers (holders of Race weight) sell icon back to the pool")
        price = achieved_price(self.params.get(ctx).phases, self.phase.get(ctx))
        value = sale_value(price, msg.icon)
        if value == 0:
            raise ChainError(Code.INVALID_MESSAGE, f"{msg.icon} nicoin is worth less than a micro-usdt at {price}")
        if value < msg.min_usdt:
            raise ChainError(
                Code.OUT_OF_RANGE,
                f"{msg.icon} nicoin sells for {value} micro-usdt now, less than the {msg.min_usdt} asked",
            )
        held = self.bank.usdt_balance(ctx, POOL_ACCOUNT)
        if held < value:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"the pool holds {held} micro-usdt, this sale needs {value}")
        self.bank.send(ctx, ctx.tx.signer, POOL_ACCOUNT, msg.icon)
        self.bank.send_usdt(ctx, POOL_ACCOUNT, ctx.tx.signer, value)
        ctx.emit("pool_sell", seller=encode_address(ctx.tx.signer), icon=str(msg.icon), usdt=str(value))
        return encode(Trade(icon=Amount(msg.icon), usdt=Amount(value)))

    def handle_bridge_deposit(self, ctx: TxContext, msg: MsgBridgeDeposit) -> None:
        """pool/BridgeDeposit: the bridge account mints usdt for an external deposit it attests, once per id."""
        bridge = self.params.get(ctx).bridge
        if not bridge or ctx.tx.signer != bridge:
            raise ChainError(Code.UNAUTHORIZED, "only the bridge account may attest deposits")
        if self.deposits.has(ctx, msg.deposit_id):
            raise ChainError(Code.ALREADY_DONE, f"deposit {msg.deposit_id!r} was already credited")
        self.bank.mint_usdt(ctx, msg.recipient, msg.amount)
        deposit = Deposit(
            deposit_id=msg.deposit_id,
            recipient=msg.recipient,
            amount=Amount(msg.amount),
            height=Amount(ctx.block.height),
        )
        self.deposits.set(ctx, msg.deposit_id, deposit)
        recipient = encode_address(msg.recipient)
        ctx.emit("bridge_deposit", deposit_id=msg.deposit_id, recipient=recipient, amount=str(msg.amount))

    def handle_bridge_withdraw(self, ctx: TxContext, msg: MsgBridgeWithdraw) -> None:
        """pool/BridgeWithdraw: burn the signer's usdt and record the withdrawal for the bridge to pay out."""
        self.bank.burn_usdt(ctx, ctx.tx.signer, msg.amount)
        number = self.last_withdrawal.get(ctx) + 1
        withdrawal = Withdrawal(
            id=number,
            owner=ctx.tx.signer,
            amount=Amount(msg.amount),
            destination=msg.destination,
            height=Amount(ctx.block.height),
        )
        self.withdrawals.set(ctx, number, withdrawal)
        self.last_withdrawal.set(ctx, number)
        owner = encode_address(ctx.tx.signer)
        ctx.emit("bridge_withdrawal", id=str(number), owner=owner, amount=str(msg.amount), destination=msg.destination)

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """pool/UpdateParams: governance replaces the params; the opened phases and the schedule's total stay."""
        require_authority(ctx, "change pool params")
        old, new, phase = self.params.get(ctx).phases, msg.params.phases, self.phase.get(ctx)
        if new[: phase + 1] != old[: phase + 1] or later_stock(new, phase) != later_stock(old, phase):
            raise ChainError(
                Code.INVALID_MESSAGE,
                f"a new schedule keeps phases 1 to {phase + 1} as they are and offers as much after them",
            )
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    def check_stock(self, ctx: Context) -> None:
        """The stock invariant: the pool account holds every later phase in full and the current phase is not
        empty unless it is the last."""
        phases, phase = self.params.get(ctx).phases, self.phase.get(ctx)
        stock, later = self.bank.balance(ctx, POOL_ACCOUNT), later_stock(phases, phase)
        if phase >= len(phases) or stock < later or (stock == later and phase + 1 < len(phases)):
            raise InvariantBroken(f"phase {phase + 1} of {len(phases)}: the pool holds {stock}, later phases {later}")

    def query_state(self, ctx: Context, _: None) -> PoolState:
        """The open phase, its price and what is left in it, and the pool's icon and usdt."""
        phases, phase = self.params.get(ctx).phases, self.phase.get(ctx)
        stock = self.bank.balance(ctx, POOL_ACCOUNT)
        left = max(stock - later_stock(phases, phase), 0)
        return PoolState(
            phase=phase + 1,
            phases=len(phases),
            price=phases[phase].price,
            sell_price=achieved_price(phases, phase),
            left=left,
            sold_out=left == 0,
            icon=stock,
            usdt=self.bank.usdt_balance(ctx, POOL_ACCOUNT),
        )

    def query_params(self, ctx: Context, _: None) -> Params:
        """The schedule and the bridge account."""
        return self.params.get(ctx)

    def query_withdrawals(self, ctx: Context, _: None) -> Withdrawals:
        """Every recorded withdrawal, oldest first."""
        return Withdrawals(tuple(w for _, w in self.withdrawals.items(ctx)))


class PoolModule(Module[Keeper, PoolGenesis]):
    """Module wiring: trade and bridge messages, params by governance, queries and the stock invariant."""

    name = NAME
    genesis_type = PoolGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgBuy: Keeper.handle_buy,
        MsgSell: Keeper.handle_sell,
        MsgBridgeDeposit: Keeper.handle_bridge_deposit,
        MsgBridgeWithdraw: Keeper.handle_bridge_withdraw,
        MsgUpdateParams: Keeper.handle_update_params,
    }
    queries: ClassVar[QueryTable] = {
        STATE: Keeper.query_state,
        PARAMS: Keeper.query_params,
        WITHDRAWALS: Keeper.query_withdrawals,
    }

    def init_genesis(self, ctx: Context, state: PoolGenesis) -> None:
        """Params, deposits and withdrawals; the phase, checked against the icon bank gave the pool account.

        The pool account must hold every phase after `state.phase` in full (ValueError if not); an empty one
        has no sale (the last phase, sold out). A phase left empty opens the next."""
        k, phases = self.keeper, state.params.phases
        k.params.set(ctx, state.params)
        stock, phase = k.bank.balance(ctx, POOL_ACCOUNT), state.phase
        if stock == 0:
            phase = len(phases) - 1
        elif stock < later_stock(phases, phase):
            raise ValueError(
                f"bank gives the pool account {encode_address(POOL_ACCOUNT)} {stock} nicoin, less than the "
                f"{later_stock(phases, phase)} the phases after phase {phase + 1} offer"
            )
        while stock == later_stock(phases, phase) and phase + 1 < len(phases):
            phase += 1
        k.phase.set(ctx, phase)
        for deposit in state.deposits:
            k.deposits.set(ctx, deposit.deposit_id, deposit)
        for withdrawal in state.withdrawals:
            k.withdrawals.set(ctx, withdrawal.id, withdrawal)
        k.last_withdrawal.set(ctx, max((w.id for w in state.withdrawals), default=0))

    def export_genesis(self, ctx: Context) -> PoolGenesis:
        """Everything init_genesis loads (the icon and usdt are bank's balances of the pool account)."""
        k = self.keeper
        return PoolGenesis(
            params=k.params.get(ctx),
            phase=k.phase.get(ctx),
            deposits=tuple(d for _, d in k.deposits.items(ctx)),
            withdrawals=tuple(w for _, w in k.withdrawals.items(ctx)),
        )

    def invariants(self) -> Mapping[str, Invariant]:
        """stock: the pool account holds the phases still for sale."""
        return {"stock": self.keeper.check_stock}
