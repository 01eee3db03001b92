"""auth messages (none), parameters, records, genesis state and queries."""

from __future__ import annotations

from dataclasses import dataclass

from racenet.chain.module import GenesisState
from racenet.chain.query import ADDRESS_ARG, NO_ARG, query
from racenet.chain.scalars import Address


@dataclass(frozen=True)
class Params:
    """auth parameters: size limits for transactions (bytes, messages) and memos (bytes)."""

    max_tx_bytes: int = 65_536
    max_msgs_per_tx: int = 64
    max_memo_bytes: int = 256


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
