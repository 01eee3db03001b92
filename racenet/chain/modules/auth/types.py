"""auth messages, parameters, records, genesis state and queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from racenet.chain.authority import AuthorityMsg, check_params
from racenet.chain.module import GenesisState
from racenet.chain.query import ADDRESS_ARG, NO_ARG, query
from racenet.chain.scalars import Address


@dataclass(frozen=True)
class Params:
    """auth parameters: size limits for transactions (bytes, messages) and memos (bytes)."""

    max_tx_bytes: int = 65_536
    max_msgs_per_tx: int = 64
    max_memo_bytes: int = 256

    def validate(self) -> None:
        """Limits that still admit a governance transaction (so a vote can always undo a change)."""
        if not 4_096 <= self.max_tx_bytes <= 4 * 1024 * 1024:
            raise ValueError("max_tx_bytes must be 4,096 to 4,194,304")
        if not 1 <= self.max_msgs_per_tx <= 1_024 or not 0 <= self.max_memo_bytes <= self.max_tx_bytes:
            raise ValueError("max_msgs_per_tx must be 1 to 1,024 and max_memo_bytes at most max_tx_bytes")


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace auth's params; accepted only from the governance authority (a passed proposal)."""

    TYPE: ClassVar[str] = "auth/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True)
class Account:
    """An account's public key (empty until its first transaction) and next sequence."""

    pub_key: bytes
    sequence: int


@dataclass(frozen=True)
class AccountInfo:
    """An account as queries and genesis show it."""

    address: Address
    pub_key: bytes
    sequence: int


@dataclass(frozen=True)
class AuthGenesis(GenesisState):
    """Params and the accounts that have sent transactions (with their sequences)."""

    params: Params = Params()
    accounts: tuple[AccountInfo, ...] = ()


ACCOUNT = query("auth/account", ADDRESS_ARG, AccountInfo)
PARAMS = query("auth/params", NO_ARG, Params)
