"""auth: accounts (public key, sequence), transaction size limits and the ante checks."""

from racenet.chain.modules.auth.module import Account, AuthModule, Keeper, Params

__all__ = ["Account", "AuthModule", "Keeper", "Params"]
