"""bank: balances in nicoin, transfers, fee collection, module escrows and total supply."""

from racenet.chain.modules.bank.module import FEE_COLLECTOR, BankModule, Keeper
from racenet.chain.modules.bank.types import (
    BALANCE,
    PARAMS,
    SUPPLY,
    USDT_BALANCE,
    Balance,
    BankGenesis,
    Escrow,
    MsgSend,
    MsgUpdateParams,
    Params,
    Supply,
)

__all__ = [
    "BALANCE",
    "FEE_COLLECTOR",
    "PARAMS",
    "SUPPLY",
    "USDT_BALANCE",
    "Balance",
    "BankGenesis",
    "BankModule",
    "Escrow",
    "Keeper",
    "MsgSend",
    "MsgUpdateParams",
    "Params",
    "Supply",
]
