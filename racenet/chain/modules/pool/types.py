"""pool messages, params, records, genesis state and queries (whitepaper Appendix E).

Units: icon amounts are nicoin (1 icon = 10**9 nicoin); usdt amounts are micro-usdt (1 usdt = 10**6 micro-usdt,
USDT's own 6 decimals); a phase's price is micro-usdt per whole icon ($0.005 = 5,000).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

from racenet.chain.authority import AuthorityMsg, check_params
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.modules.bank.denom import NICOIN_PER
from racenet.chain.query import NO_ARG, query
from racenet.chain.scalars import MAX_AMOUNT, Address, Amount

ICON = NICOIN_PER["icon"]
USDT = 10**6
"""micro-usdt per usdt."""
MAX_PHASES = 64
MAX_PRICE = 10**12
"""$1,000,000 per icon: a bound that keeps every phase's cost far inside u64 arithmetic."""
MAX_EXTERNAL_ID = 128
"""Longest external deposit id or withdrawal destination, in bytes of UTF-8."""


@dataclass(frozen=True, kw_only=True)
class Phase:
    """One sale phase: `size` nicoin offered at `price` micro-usdt per icon."""

    size: Amount
    price: Amount


DEFAULT_PHASES = tuple(Phase(size=Amount(12_000_000 * ICON), price=Amount(5_000 * 2**k)) for k in range(10))
"""Appendix E: 120M icon in 10 phases of 12M; $0.005, then $0.01, and on "exponentially": doubling each phase,
to $2.56 for the tenth. Selling all of it brings in $61.38M."""


@dataclass(frozen=True)
class Params:
    """The sale schedule (in order; the next phase opens when the current one sells out) and the bridge account
    that alone may mint usdt (empty: no bridge yet, deposits are refused)."""

    phases: tuple[Phase, ...] = DEFAULT_PHASES
    bridge: Address = b""

    def validate(self) -> None:
        """1 to MAX_PHASES phases of positive size, prices rising from 1 to MAX_PRICE; a 20-byte bridge or none."""
        if not 1 <= len(self.phases) <= MAX_PHASES:
            raise ValueError(f"phases: 1 to {MAX_PHASES} phases")
        if any(p.size <= 0 for p in self.phases):
            raise ValueError("phases: every phase offers some icon")
        prices = [p.price for p in self.phases]
        if prices[0] < 1 or prices[-1] > MAX_PRICE or any(a >= b for a, b in pairwise(prices)):
            raise ValueError(f"phases: prices rise from phase to phase, within 1 to {MAX_PRICE} micro-usdt per icon")
        if sum(int(p.size) for p in self.phases) > MAX_AMOUNT:
            raise ValueError("phases: the schedule offers more than 2^64 - 1 nicoin")
        if len(self.bridge) not in (0, 20):
            raise ValueError("bridge: a 20-byte address, or empty for none")


MAX_WITHDRAWAL_ID = 2**63
"""Withdrawal ids count up from 1; genesis may not start them where the next would overflow."""


def _check_external(what: str, text: str) -> None:
    """Printable ASCII only: every node judges it alike, whatever its Python's Unicode tables."""
    if not 1 <= len(text) <= MAX_EXTERNAL_ID or not all(" " <= c <= "~" for c in text):
        raise ChainError(Code.INVALID_MESSAGE, f"{what} is 1 to {MAX_EXTERNAL_ID} characters of printable ASCII")


def check_deposit_id(deposit_id: str) -> None:
    """A printable ASCII id without capitals: one spelling per external deposit, so none is credited twice."""
    _check_external("deposit_id", deposit_id)
    if deposit_id != deposit_id.lower():
        raise ChainError(Code.INVALID_MESSAGE, "deposit_id is written in lower case (one spelling per deposit)")


@dataclass(frozen=True, kw_only=True)
class MsgBuy(Msg):
    """Pay up to `usdt` micro-usdt for icon at the phase prices; refused unless at least `min_icon` nicoin come
    back (the buyer's slippage bound). usdt the bought icon does not use stays with the buyer."""

    TYPE: ClassVar[str] = "pool/Buy"
    usdt: int
    min_icon: int

    def validate(self) -> None:
        """A positive payment."""
        if self.usdt <= 0:
            raise ChainError(Code.INVALID_MESSAGE, "usdt to pay must be positive")


@dataclass(frozen=True, kw_only=True)
class MsgSell(Msg):
    """Sell `icon` nicoin back to the pool at the current phase's price; refused unless at least `min_usdt`
    micro-usdt come back (the seller's slippage bound)."""

    TYPE: ClassVar[str] = "pool/Sell"
    icon: int
    min_usdt: int

    def validate(self) -> None:
        """A positive amount."""
        if self.icon <= 0:
            raise ChainError(Code.INVALID_MESSAGE, "icon to sell must be positive")


@dataclass(frozen=True, kw_only=True)
class MsgBridgeDeposit(Msg):
    """The bridge account attests an external deposit: mint `amount` micro-usdt to `recipient`. Each external
    `deposit_id` (e.g. `eth:<tx hash>:<log index>`) is accepted once."""

    TYPE: ClassVar[str] = "pool/BridgeDeposit"
    deposit_id: str
    recipient: bytes
    amount: int

    def validate(self) -> None:
        """A printable lower-case id, a 20-byte recipient and a positive amount."""
        check_deposit_id(self.deposit_id)
        if len(self.recipient) != 20:
            raise ChainError(Code.INVALID_MESSAGE, "recipient must be a 20-byte address")
        if self.amount <= 0:
            raise ChainError(Code.INVALID_MESSAGE, "amount must be positive")


@dataclass(frozen=True, kw_only=True)
class MsgBridgeWithdraw(Msg):
    """Burn `amount` of the signer's micro-usdt for the bridge to pay out to `destination` (an address on the
    external chain) off-chain."""

    TYPE: ClassVar[str] = "pool/BridgeWithdraw"
    amount: int
    destination: str

    def validate(self) -> None:
        """A positive amount and a printable destination."""
        if self.amount <= 0:
            raise ChainError(Code.INVALID_MESSAGE, "amount must be positive")
        _check_external("destination", self.destination)


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace the pool's params; accepted only from the governance authority. The phases opened so far must stay
    as they are and the schedule's total must not change (the pool's icon is exactly what it still offers)."""

    TYPE: ClassVar[str] = "pool/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True, kw_only=True)
class Deposit:
    """An attested deposit: who received how much micro-usdt, at which height."""

    deposit_id: str
    recipient: Address
    amount: Amount
    height: Amount


@dataclass(frozen=True, kw_only=True)
class Withdrawal:
    """A burned withdrawal the bridge is to pay: its sequence number, owner, micro-usdt, external destination and
    height."""

    id: Amount
    owner: Address
    amount: Amount
    destination: str
    height: Amount


@dataclass(frozen=True, kw_only=True)
class Trade:
    """What a buy or sell did (its result data): nicoin and micro-usdt that changed hands."""

    icon: Amount
    usdt: Amount


@dataclass(frozen=True, kw_only=True)
class PoolState:
    """The sale now: the phase (1-based) of `phases`, its price (micro-usdt per icon), the price providers sell
    back at (the last sold-out phase's), the nicoin left in the phase (sold-back icon refills it), whether
    everything is sold, and the pool account's icon and usdt."""

    phase: int
    phases: int
    price: int
    sell_price: int
    left: int
    sold_out: bool
    icon: int
    usdt: int


@dataclass(frozen=True)
class Withdrawals:
    """Every recorded withdrawal, oldest first."""

    withdrawals: tuple[Withdrawal, ...]


@dataclass(frozen=True)
class PoolGenesis(GenesisState):
    """Params, the current phase (0-based), attested deposits and recorded withdrawals.

    The pool's icon is a bank genesis balance of `POOL_ACCOUNT` (bank mints every genesis balance). It must
    cover the phases after `phase` in full; what it holds beyond them is left in `phase`. A genesis that gives
    the pool account nothing has no sale: the pool reads as sold out.
    """

    params: Params = Params()
    phase: int = 0
    deposits: tuple[Deposit, ...] = ()
    withdrawals: tuple[Withdrawal, ...] = ()

    def validate(self) -> None:
        """Valid params, a phase of the schedule, each deposit id and withdrawal id once."""
        self.params.validate()
        if not 0 <= self.phase < len(self.params.phases):
            raise ValueError(f"phase: 0 to {len(self.params.phases) - 1}")
        if len({d.deposit_id for d in self.deposits}) != len(self.deposits):
            raise ValueError("deposits: a deposit id is listed twice")
        if len({w.id for w in self.withdrawals}) != len(self.withdrawals):
            raise ValueError("withdrawals: an id is listed twice")
        try:
            for d in self.deposits:
                MsgBridgeDeposit(deposit_id=d.deposit_id, recipient=d.recipient, amount=int(d.amount)).validate()
            for w in self.withdrawals:
                MsgBridgeWithdraw(amount=int(w.amount), destination=w.destination).validate()
        except ChainError as e:
            raise ValueError(f"deposits and withdrawals: {e.message}") from e
        if any(not 1 <= w.id <= MAX_WITHDRAWAL_ID or len(w.owner) != 20 for w in self.withdrawals):
            raise ValueError(f"withdrawals: ids 1 to {MAX_WITHDRAWAL_ID}, each with a 20-byte owner")


STATE = query("pool/state", NO_ARG, PoolState)
PARAMS = query("pool/params", NO_ARG, Params)
WITHDRAWALS = query("pool/withdrawals", NO_ARG, Withdrawals)
