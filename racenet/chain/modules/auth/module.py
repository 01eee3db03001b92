"""auth: accounts and the checks every transaction passes before its messages run.

The ante checks, in order: chain id, memo size, signature, sequence, fee (bank's schedule for
the transaction's bytes and messages); then the fee moves to the fee collector and the sequence
advances. The ante's effects stay even when a message then fails in a block (as in the Cosmos
SDK): a failed transaction pays for the block space it took and can never be replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from racenet.chain.authority import require_authority
from racenet.chain.collections import ADDRESS, Item, Map, Record
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, HandlerTable, Module, ModuleKeeper, QueryTable, TxContext
from racenet.chain.modules.auth.types import (
    ACCOUNT,
    PARAMS,
    Account,
    AccountInfo,
    AuthGenesis,
    MsgUpdateParams,
    Params,
)
from racenet.chain.tx import SignedTx, sign_bytes
from racenet.crypto.address import address_from_pubkey
from racenet.crypto.keys import PublicKey

NAME = "auth"


class BankKeeper(Protocol):
    """What auth needs of bank: the fee schedule and a transfer to the fee collector."""

    def required_fee(self, ctx: Context, tx_bytes: int, work: Sequence[int]) -> int: ...
    def collect_fee(self, ctx: Context, payer: bytes, amount: int) -> None: ...


class Keeper(ModuleKeeper):
    """The only reader and writer of auth state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    accounts = Map(b"account/", ADDRESS, Record(Account))

    def __init__(self, bank: BankKeeper) -> None:
        self.bank = bank

    def account(self, ctx: Context, address: bytes) -> Account:
        """The account at `address` (a fresh one if it never sent a transaction)."""
        return self.accounts.get(ctx, address) or Account(b"", 0)

    def ante(self, ctx: Context, tx: SignedTx, tx_bytes: int, work: Sequence[int], *, verified: bool) -> bytes:
        """Check and charge a transaction before its messages are even decoded; return the signer.

        `work` holds the `WORK` units of each message's type (its fee share beyond bytes);
        `verified` says the signature of these exact bytes was already checked.
        """
        body, pub = tx.body, tx.pub_key
        if body.chain_id != ctx.block.chain_id:
            raise ChainError(Code.WRONG_CHAIN_ID, f"chain id is {body.chain_id!r}, expected {ctx.block.chain_id!r}")
        if len(body.memo.encode()) > self.params.get(ctx).max_memo_bytes:
            raise ChainError(Code.MALFORMED_TX, "memo too long")
        if not verified and not PublicKey(pub).verify(sign_bytes(pub, body), tx.signature):
            raise ChainError(Code.BAD_SIGNATURE, "signature does not verify")
        signer = address_from_pubkey(pub)
        account = self.account(ctx, signer)
        if body.sequence != account.sequence:
            raise ChainError(Code.WRONG_SEQUENCE, f"sequence is {body.sequence}, expected {account.sequence}")
        required = self.bank.required_fee(ctx, tx_bytes, work)
        if body.fee < required:
            raise ChainError(Code.INSUFFICIENT_FEE, f"fee {body.fee} nicoin is below the required {required}")
        self.bank.collect_fee(ctx, signer, body.fee)
        self.accounts.set(ctx, signer, Account(pub, account.sequence + 1))
        return signer

    def query_account(self, ctx: Context, address: bytes) -> AccountInfo:
        """An account's public key and next sequence."""
        account = self.account(ctx, address)
        return AccountInfo(address, account.pub_key, account.sequence)

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """auth/UpdateParams: governance replaces the params."""
        require_authority(ctx, "change auth params")
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    def query_params(self, ctx: Context, _: None) -> Params:
        """The auth parameters."""
        return self.params.get(ctx)


class AuthModule(Module[Keeper, AuthGenesis]):
    """Module wiring: governance's params update, genesis and queries for auth."""

    name = NAME
    genesis_type = AuthGenesis
    handlers: ClassVar[HandlerTable] = {MsgUpdateParams: Keeper.handle_update_params}
    queries: ClassVar[QueryTable] = {ACCOUNT: Keeper.query_account, PARAMS: Keeper.query_params}

    def init_genesis(self, ctx: Context, state: AuthGenesis) -> None:
        """Set params and any accounts carried over from an export."""
        self.keeper.params.set(ctx, state.params)
        for entry in state.accounts:
            self.keeper.accounts.set(ctx, entry.address, Account(entry.pub_key, entry.sequence))

    def export_genesis(self, ctx: Context) -> AuthGenesis:
        """Params and accounts with their sequences."""
        accounts = tuple(AccountInfo(a, acc.pub_key, acc.sequence) for a, acc in self.keeper.accounts.items(ctx))
        return AuthGenesis(params=self.keeper.params.get(ctx), accounts=accounts)
