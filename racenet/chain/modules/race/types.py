"""race messages, parameters and stored records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from racenet.chain.codec import encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Msg

MAX_REVEAL_LEAVES = 256
MAX_PROOF_DEPTH = 40


@dataclass(frozen=True)
class Params:
    """The Race schedule (in blocks) and its validation rules.

    A cycle is `race_blocks` of mining, `commit_blocks` to commit a Merkle root of the
    appropriate vectors found, `reveal_blocks` to open the challenged leaves and
    `vote_blocks` for assigned validators to vote; the tally at the cycle's last block
    sets the voting weights of the next cycle.
    """

    preset: str = "tiny"
    difficulty: int = 900
    race_blocks: int = 10
    commit_blocks: int = 3
    reveal_blocks: int = 3
    vote_blocks: int = 4
    sample_size: int = 16
    validators_per_participant: int = 3
    quorum_percent: int = 50
    weight_cap: int = 0


@dataclass(frozen=True)
class RegisterNode(Msg):
    """Bind the signing account to the ed25519 consensus key its Race weight powers."""

    TYPE: ClassVar[str] = "race/RegisterNode"
    consensus_pub_key: bytes

    def validate(self) -> None:
        """The key is a 32-byte ed25519 public key."""
        if len(self.consensus_pub_key) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "consensus key must be a 32-byte ed25519 public key")


@dataclass(frozen=True)
class CommitProof(Msg):
    """Commit, before the commit window closes, to `count` appropriate vectors under `root`."""

    TYPE: ClassVar[str] = "race/CommitProof"
    cycle: int
    root: bytes
    count: int

    def validate(self) -> None:
        """A 32-byte root and at least one appropriate vector."""
        if len(self.root) != 32 or self.count < 1:
            raise ChainError(Code.INVALID_MESSAGE, "a commitment needs a 32-byte root and a count of at least 1")


@dataclass(frozen=True)
class Leaf:
    """An opened leaf: its index, the nonce it holds, and its Merkle path."""

    index: int
    nonce: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class Reveal(Msg):
    """Open the challenged leaves, each followed by its successor (which proves nonces increase)."""

    TYPE: ClassVar[str] = "race/Reveal"
    cycle: int
    leaves: tuple[Leaf, ...]

    def validate(self) -> None:
        """Bounded size and well-formed paths."""
        if not 0 < len(self.leaves) <= MAX_REVEAL_LEAVES:
            raise ChainError(Code.INVALID_MESSAGE, f"a reveal opens 1 to {MAX_REVEAL_LEAVES} leaves")
        for leaf in self.leaves:
            if len(leaf.path) > MAX_PROOF_DEPTH or any(len(h) != 32 for h in leaf.path):
                raise ChainError(Code.INVALID_MESSAGE, "a Merkle path is at most 40 hashes of 32 bytes")


@dataclass(frozen=True)
class Vote(Msg):
    """An assigned validator's verdict on one participant's revealed nonces."""

    TYPE: ClassVar[str] = "race/Vote"
    cycle: int
    participant: bytes
    accept: bool
    checked: int
    mismatches: int

    def validate(self) -> None:
        """A 20-byte participant address and consistent counts."""
        if len(self.participant) != 20:
            raise ChainError(Code.INVALID_MESSAGE, "participant must be a 20-byte address")
        if self.mismatches > self.checked:
            raise ChainError(Code.INVALID_MESSAGE, "mismatches cannot exceed the nonces checked")


@dataclass(frozen=True)
class Commitment:
    """A participant's commitment in one cycle."""

    root: bytes
    count: int


@dataclass(frozen=True)
class Revealed:
    """The challenged nonces a participant opened (in challenge order) and its public key."""

    pub_key: bytes
    nonces: tuple[int, ...]


@dataclass(frozen=True)
class CastVote:
    """A stored vote."""

    accept: bool
    checked: int
    mismatches: int


@dataclass(frozen=True)
class Outcome:
    """How a participant's proof fared in a cycle's tally."""

    cycle: int
    claimed: int
    weight: int
    status: str


@dataclass(frozen=True)
class LeafData:
    """What a proof leaf commits to: the node's key, the leaf count, the index and the nonce."""

    pub_key: bytes
    count: int
    index: int
    nonce: int


def proof_leaf(pub_key: bytes, count: int, index: int, nonce: int) -> bytes:
    """The bytes of Merkle leaf `index`: binding each nonce to its node and to the claimed count."""
    return encode(LeafData(pub_key, count, index, nonce))
