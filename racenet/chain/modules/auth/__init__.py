"""auth: accounts (public key, sequence), transaction size limits and the ante checks."""

from racenet.chain.modules.auth.module import AuthModule, Keeper
from racenet.chain.modules.auth.types import (
    ACCOUNT,
    PARAMS,
    Account,
    AccountInfo,
    AuthGenesis,
    MsgUpdateParams,
    Params,
)

__all__ = [
    "ACCOUNT",
    "PARAMS",
    "Account",
    "AccountInfo",
    "AuthGenesis",
    "AuthModule",
    "Keeper",
    "MsgUpdateParams",
    "Params",
]
