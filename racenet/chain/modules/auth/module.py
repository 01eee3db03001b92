"""auth: accounts and the checks every transaction passes before its messages run.

State keys under `auth/`: `account/<address>` (public key, next sequence), `params`.
The ante checks, in order: chain id, memo size, signature, sequence, minimum fee,
then the fee moves to the fee collector and the sequence advances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from racenet.chain.codec import decode, encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, Module, ModuleKeeper, load_params
from racenet.chain.modules import bank
from racenet.chain.tx import DecodedTx, sign_bytes
from racenet.crypto.address import address_from_pubkey, decode_address, encode_address
from racenet.crypto.keys import PublicKey

NAME = "auth"


@dataclass(frozen=True)
class Params:
    """auth parameters: size limits for transactions and memos, in bytes."""

    max_tx_bytes: int = 65_536
    max_memo_bytes: int = 256


@dataclass(frozen=True)
class Account:
    """An account's public key (empty until its first transaction) and next sequence."""

    pub_key: bytes
    sequence: int


class Keeper(ModuleKeeper):
    """The only reader and writer of auth keys."""

    name = NAME

    def params(self, ctx: Context) -> Params:
        """Current auth parameters."""
        return self.load(ctx, b"params", Params) or Params()

    def set_params(self, ctx: Context, params: Params) -> None:
        """Replace the auth parameters."""
        self.store(ctx).set(b"params", encode(params))

    def account(self, ctx: Context, address: bytes) -> Account:
        """The account at `address` (a fresh one if it never sent a transaction)."""
        return self.load(ctx, b"account/" + address, Account) or Account(b"", 0)

    def set_account(self, ctx: Context, address: bytes, account: Account) -> None:
        """Store an account."""
        self.store(ctx).set(b"account/" + address, encode(account))

    def accounts(self, ctx: Context) -> list[tuple[bytes, Account]]:
        """Every account that has sent a transaction, ordered by address."""
        n = len(b"account/")
        return [(k[n:], decode(Account, v)) for k, v in self.store(ctx).iterate(b"account/")]

    def ante(self, ctx: Context, dtx: DecodedTx, bank_keeper: bank.Keeper) -> bytes:
        """Check and charge a transaction before its messages run; return the signer."""
        body, pub = dtx.tx.body, dtx.tx.pub_key
        if body.chain_id != ctx.chain_id:
            raise ChainError(Code.WRONG_CHAIN_ID, f"chain id is {body.chain_id!r}, expected {ctx.chain_id!r}")
        if len(body.memo.encode()) > self.params(ctx).max_memo_bytes:
            raise ChainError(Code.MALFORMED_TX, "memo too long")
        if not PublicKey(pub).verify(sign_bytes(pub, body), dtx.tx.signature):
            raise ChainError(Code.BAD_SIGNATURE, "signature does not verify")
        signer = address_from_pubkey(pub)
        account = self.account(ctx, signer)
        if body.sequence != account.sequence:
            raise ChainError(Code.WRONG_SEQUENCE, f"sequence is {body.sequence}, expected {account.sequence}")
        min_fee = bank_keeper.params(ctx).min_fee
        if body.fee < min_fee:
            raise ChainError(Code.INSUFFICIENT_FEE, f"fee {body.fee} nicoin is below the minimum {min_fee}")
        bank_keeper.send(ctx, signer, bank.module.FEE_COLLECTOR, body.fee)
        self.set_account(ctx, signer, Account(pub, account.sequence + 1))
        return signer


class AuthModule(Module):
    """Module wiring: genesis and queries for auth."""

    name = NAME

    def __init__(self) -> None:
        self.keeper = Keeper()

    def init_genesis(self, ctx: Context, state: dict[str, Any]) -> None:
        """Set params and any accounts carried over from an export."""
        self.keeper.set_params(ctx, load_params(Params, state.get("params", {})))
        for entry in state.get("accounts", []):
            account = Account(bytes.fromhex(entry["pub_key"]), int(entry["sequence"]))
            self.keeper.set_account(ctx, decode_address(entry["address"]), account)

    def export_genesis(self, ctx: Context) -> dict[str, Any]:
        """Params and accounts with their sequences."""
        return {
            "params": asdict(self.keeper.params(ctx)),
            "accounts": [
                {"address": encode_address(a), "pub_key": acc.pub_key.hex(), "sequence": acc.sequence}
                for a, acc in self.keeper.accounts(ctx)
            ],
        }

    def query(self, ctx: Context, path: str, data: bytes) -> Any:
        """`account` (data: bech32 address) and `params`."""
        if path == "account":
            address = decode_address(data.decode())
            acc = self.keeper.account(ctx, address)
            return {"address": encode_address(address), "pub_key": acc.pub_key.hex(), "sequence": acc.sequence}
        if path == "params":
            return asdict(self.keeper.params(ctx))
        return super().query(ctx, path, data)
