"""dummy messages, parameters, records, genesis state and queries (whitepaper §6, "Dummy tasks")."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from racenet.chain.authority import MAX_WINDOW_BLOCKS, AuthorityMsg, check_params
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import ADDRESS_ARG, NO_ARG, query
from racenet.chain.scalars import Address, Amount

COMMIT_DOMAIN = b"racenet/dummy/commit/v1\x00"
CLAIM_DOMAIN = b"racenet/dummy/claim/v1\x00"
MAX_BATCH = 32
"""Commitments one MsgCommit may carry."""


def commitment(chain_id: str, claimant: bytes, request_id: bytes, salt: bytes) -> bytes:
    """What a validator commits before a dummy request starts: it hides the request id (the salt is secret until
    the claim) and names the claimant, so a copied commitment is useless to anyone else."""
    return hashlib.sha256(COMMIT_DOMAIN + chain_id.encode() + b"\x00" + claimant + request_id + salt).digest()


def claim_sign_bytes(chain_id: str, request_id: bytes, claimant: bytes) -> bytes:
    """What the request's developer (the issuer account) signs to let `claimant` be reimbursed for it."""
    return CLAIM_DOMAIN + chain_id.encode() + b"\x00" + request_id + claimant


@dataclass(frozen=True)
class Params:
    """The dummy pool's rules.

    At most `cycle_budget` nicoin is reimbursed per cycle, shared by weight: a claimant with weight w of W may be
    reimbursed `cycle_budget × w / W` in a cycle. A validator holds at most `max_commitments` unclaimed commitments,
    each kept `commitment_blocks` blocks.
    """

    cycle_budget: Amount = Amount(10**10)
    max_commitments: int = 256
    commitment_blocks: int = 5_000

    def validate(self) -> None:
        """At least one commitment, kept at least one block."""
        if self.max_commitments < 1 or not 1 <= self.commitment_blocks <= MAX_WINDOW_BLOCKS:
            raise ValueError(f"max_commitments must be at least 1 and commitment_blocks 1 to {MAX_WINDOW_BLOCKS}")


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace the dummy pool's params; accepted only from the governance authority (a passed proposal)."""

    TYPE: ClassVar[str] = "dummy/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True, kw_only=True)
class Commitment:
    """A stored commitment: the height it was made at, the first beacon round unknown then, and its expiry."""

    height: int
    round: int
    expiry: int


@dataclass(frozen=True)
class MsgCommit(Msg):
    """A weight holder commits to dummy requests it will send: one `commitment(...)` each."""

    TYPE: ClassVar[str] = "dummy/Commit"
    commitments: tuple[bytes, ...]

    def validate(self) -> None:
        """1 to MAX_BATCH distinct 32-byte commitments."""
        if not 0 < len(self.commitments) <= MAX_BATCH or len(set(self.commitments)) != len(self.commitments):
            raise ChainError(Code.INVALID_MESSAGE, f"commit 1 to {MAX_BATCH} distinct commitments")
        if any(len(c) != 32 for c in self.commitments):
            raise ChainError(Code.INVALID_MESSAGE, "a commitment is 32 bytes")


@dataclass(frozen=True, kw_only=True)
class MsgClaim(Msg):
    """A weight holder reveals a settled dummy request it committed to, with its developer's consent, and is
    reimbursed the request's cost from the dummy pool."""

    TYPE: ClassVar[str] = "dummy/Claim"
    WORK: ClassVar[int] = 1
    request_id: bytes
    salt: bytes
    developer_key: bytes
    developer_signature: bytes

    def validate(self) -> None:
        """32-byte request id, salt and key; a 64-byte signature."""
        sizes = (len(self.request_id), len(self.salt), len(self.developer_key), len(self.developer_signature))
        if sizes != (32, 32, 32, 64):
            raise ChainError(
                Code.INVALID_MESSAGE, "a claim has a 32-byte request id, salt and key, a 64-byte signature"
            )


@dataclass(frozen=True)
class CommitmentEntry:
    """An open commitment (genesis and export)."""

    claimant: Address
    commitment: bytes
    record: Commitment


@dataclass(frozen=True)
class ClaimedEntry:
    """A claimed request id, remembered until its receipt is pruned (`prune_height`)."""

    request_id: bytes
    prune_height: int


@dataclass(frozen=True)
class SpentEntry:
    """What a claimant was reimbursed in a cycle."""

    cycle: int
    claimant: Address
    amount: Amount


@dataclass(frozen=True)
class DummyGenesis(GenesisState):
    """Params, open commitments, claimed ids and this cycle's reimbursements. The pool itself is a bank escrow
    (`bank.escrows`: module `dummy`, id `pool`)."""

    params: Params = Params()
    commitments: tuple[CommitmentEntry, ...] = ()
    claimed: tuple[ClaimedEntry, ...] = ()
    spent: tuple[SpentEntry, ...] = ()

    def validate(self) -> None:
        """Valid params; commitments and claimed ids listed once, of the right sizes."""
        self.params.validate()
        keys = [(c.claimant, c.commitment) for c in self.commitments]
        if len(set(keys)) != len(keys) or any(len(c) != 32 for _, c in keys):
            raise ValueError("commitments: 32 bytes each, listed once per claimant")
        ids = [c.request_id for c in self.claimed]
        if len(set(ids)) != len(ids) or any(len(i) != 32 for i in ids):
            raise ValueError("claimed: 32-byte request ids, listed once")


@dataclass(frozen=True)
class Pool:
    """The dummy pool: what it holds and what it may pay out per cycle."""

    balance: Amount
    cycle_budget: Amount


@dataclass(frozen=True, kw_only=True)
class Claimant:
    """A validator's open commitments and its reimbursements this cycle against its cap."""

    address: Address
    open_commitments: int
    spent: Amount
    cap: Amount


PARAMS = query("dummy/params", NO_ARG, Params)
POOL = query("dummy/pool", NO_ARG, Pool)
CLAIMANT = query("dummy/claimant", ADDRESS_ARG, Claimant)
