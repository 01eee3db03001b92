"""bank: balances in nicoin, transfers, fee collection, module escrows and total supply."""

from racenet.chain.modules.bank.module import FEE_COLLECTOR, BankModule, Keeper
from racenet.chain.modules.bank.types import (
    BALANCE,
    PARAMS,
    SUPPLY,
    Balance,
    BankGenesis,
    Escrow,
    MsgSend,
    Params,
    Supply,
)

__all__ = [
    "BALANCE",
    "FEE_COLLECTOR",
    "PARAMS",
    "SUPPLY",
    "Balance",
    "BankGenesis",
    "BankModule",
    "Escrow",
    "Keeper",
    "MsgSend",
    "Params",
    "Supply",
]
