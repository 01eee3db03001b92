"""bank: balances in nicoin, transfers, fee collection, module escrows and total supply."""

from racenet.chain.modules.bank.module import BankModule, Keeper, Params, Send

__all__ = ["BankModule", "Keeper", "Params", "Send"]
