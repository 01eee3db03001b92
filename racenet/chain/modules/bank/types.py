"""bank messages, parameters, genesis state and queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from racenet.chain.authority import AuthorityMsg, check_params
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import ADDRESS_ARG, NO_ARG, query
from racenet.chain.scalars import Address, Amount


@dataclass(frozen=True)
class Params:
    """bank parameters: the fee schedule, in nicoin.

    A transaction pays at least `min_fee` + `fee_per_byte` × its size + for each message
    `fee_per_message` + `fee_per_work` × the message type's `WORK` units, so block space, state
    writes and expensive checks are priced by what they cost the validators.
    """

    min_fee: Amount = Amount(1_000)
    fee_per_byte: Amount = Amount(2)
    fee_per_message: Amount = Amount(1_000)
    fee_per_work: Amount = Amount(100)

    def required_fee(self, tx_bytes: int, work: Sequence[int]) -> Amount:
        """The least fee a transaction of `tx_bytes` bytes whose messages have `work` units each must pay."""
        per_messages = sum((self.fee_per_message + self.fee_per_work * w for w in work), Amount(0))
        return self.min_fee + self.fee_per_byte * tx_bytes + per_messages

    def validate(self) -> None:
        """Fees small enough that the fee of any transaction fits a u64 (else no transaction could pass)."""
        if max(self.min_fee, self.fee_per_message, self.fee_per_work) > MAX_FEE or self.fee_per_byte > MAX_FEE_PER_BYTE:
            raise ValueError(f"fees are at most {MAX_FEE} nicoin ({MAX_FEE_PER_BYTE} per byte)")


MAX_FEE = 10**9
"""1 icon: the bound governance may set on a fee, per transaction, message or unit of work (higher, a vote to
lower it again could cost more than voters hold)."""
MAX_FEE_PER_BYTE = 10**6


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace bank's params (the fee schedule); accepted only from the governance authority."""

    TYPE: ClassVar[str] = "bank/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True)
class MsgSend(Msg):
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


@dataclass(frozen=True)
class Balance:
    """The nicoin an address holds (a balance, or a pending reward)."""

    address: Address
    amount: int


@dataclass(frozen=True)
class ModuleTotal:
    """nicoin all escrows of one module hold together."""

    module: str
    amount: int


@dataclass(frozen=True)
class Supply:
    """Total nicoin in existence and total ever burned, with where the locked part is: the fee collector's
    balance and each module's escrows (inference requests and pending rewards, until the rewards module
    releases them)."""

    supply: int
    burned: int
    fee_collector: int
    escrowed: tuple[ModuleTotal, ...]


@dataclass(frozen=True)
class Escrow:
    """nicoin a module holds in escrow under an id of its own (e.g. inference `req/<request id>`)."""

    module: str
    id: bytes
    amount: int


@dataclass(frozen=True)
class BankGenesis(GenesisState):
    """Params, balances and escrows, and balances of the bridged stable denom usdt (micro-usdt, pool module);
    each denom's supply is its sum, minted at genesis."""

    params: Params = Params()
    balances: tuple[Balance, ...] = ()
    escrows: tuple[Escrow, ...] = ()
    usdt_balances: tuple[Balance, ...] = ()

    def validate(self) -> None:
        """Valid params; each address (of each denom) and each escrow appears once."""
        self.params.validate()
        if len({b.address for b in self.balances}) != len(self.balances):
            raise ValueError("balances: an address is listed twice")
        if len({(e.module, e.id) for e in self.escrows}) != len(self.escrows):
            raise ValueError("escrows: an escrow is listed twice")
        if len({b.address for b in self.usdt_balances}) != len(self.usdt_balances):
            raise ValueError("usdt_balances: an address is listed twice")


BALANCE = query("bank/balance", ADDRESS_ARG, Balance)
USDT_BALANCE = query("bank/usdt_balance", ADDRESS_ARG, Balance)
SUPPLY = query("bank/supply", NO_ARG, Supply)
PARAMS = query("bank/params", NO_ARG, Params)
