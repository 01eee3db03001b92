"""dummy: commitments to and reimbursement of validators' dummy inference requests (whitepaper §6)."""

from racenet.chain.modules.dummy.module import NAME, POOL_ID, DummyModule, Keeper
from racenet.chain.modules.dummy.types import (
    CLAIMANT,
    PARAMS,
    POOL,
    Claimant,
    Commitment,
    DummyGenesis,
    MsgClaim,
    MsgCommit,
    MsgUpdateParams,
    Params,
    Pool,
    claim_sign_bytes,
    commitment,
)

__all__ = [
    "CLAIMANT",
    "NAME",
    "PARAMS",
    "POOL",
    "POOL_ID",
    "Claimant",
    "Commitment",
    "DummyGenesis",
    "DummyModule",
    "Keeper",
    "MsgClaim",
    "MsgCommit",
    "MsgUpdateParams",
    "Params",
    "Pool",
    "claim_sign_bytes",
    "commitment",
]
