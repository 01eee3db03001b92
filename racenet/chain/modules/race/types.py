"""race messages, parameters, records, genesis state and queries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from racenet.chain.codec import encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import ADDRESS_ARG, NO_ARG, optional_query, query
from racenet.chain.scalars import Address, Amount

MAX_REVEAL_LEAVES = 256
MAX_PROOF_DEPTH = 40


@dataclass(frozen=True)
class Params:
    """The Race schedule (in blocks) and its validation rules.

    `preset` names the Race model; its distance threshold (calibrated for one appropriate vector per
    900 nonces) comes with the preset, off chain.

    A cycle is `race_blocks` of mining, `commit_blocks` to commit a Merkle root of the
    appropriate vectors found, `reveal_blocks` to open the challenged leaves and
    `vote_blocks` for assigned validators to vote; the tally at the cycle's last block
    sets the voting weights of the next cycle.
    """

    preset: str = "tiny"
    race_blocks: int = 10
    commit_blocks: int = 3
    reveal_blocks: int = 3
    vote_blocks: int = 4
    sample_size: int = 16
    validators_per_participant: int = 3
    quorum_percent: int = 50
    weight_cap: int = 0

    def validate(self) -> None:
        """Every phase lasts at least one block."""
        if min(self.race_blocks, self.commit_blocks, self.reveal_blocks, self.vote_blocks) < 1:
            raise ValueError("every phase needs at least one block")


class Phase(StrEnum):
    """The phases of a cycle, in order."""

    RACE = "race"
    COMMIT = "commit"
    REVEAL = "reveal"
    VOTE = "vote"


@dataclass(frozen=True)
class MsgRegisterNode(Msg):
    """Bind the signing account to the ed25519 consensus key its Race weight powers."""

    TYPE: ClassVar[str] = "race/RegisterNode"
    consensus_pub_key: bytes

    def validate(self) -> None:
        """The key is a 32-byte ed25519 public key."""
        if len(self.consensus_pub_key) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "consensus key must be a 32-byte ed25519 public key")


@dataclass(frozen=True)
class MsgCommitProof(Msg):
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
class MsgReveal(Msg):
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


@dataclass(frozen=True, kw_only=True)
class MsgVote(Msg):
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
    count: Amount


@dataclass(frozen=True)
class RevealedNonces:
    """The challenged nonces a participant opened (in challenge order) and its public key."""

    pub_key: bytes
    nonces: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class Vote:
    """A validator's stored vote on a participant."""

    accept: bool
    checked: int
    mismatches: int


class OutcomeStatus(StrEnum):
    """How a proof fared in a tally (the rules are in the race module's docstring)."""

    NO_REVEAL = "no reveal"
    UNCHECKED = "unchecked"
    NO_QUORUM = "no quorum"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ABSENT = "absent"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How a participant's proof fared in a cycle's tally: what it claimed and the weight it got."""

    cycle: int
    claimed: Amount
    weight: Amount
    status: OutcomeStatus


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


@dataclass(frozen=True)
class RaceNode:
    """A registered node: its account, its consensus key and its voting weight (genesis and export)."""

    address: Address
    consensus_pub_key: bytes
    weight: int = 0


@dataclass(frozen=True)
class RaceGenesis(GenesisState):
    """Params, the first cycle's start height (0: the chain's first block) and registered nodes."""

    params: Params = Params()
    start: int = 0
    nodes: tuple[RaceNode, ...] = ()

    def validate(self) -> None:
        """Valid params; each account and each consensus key registered once."""
        self.params.validate()
        if len({n.address for n in self.nodes}) != len(self.nodes):
            raise ValueError("nodes: an account is registered twice")
        if len({n.consensus_pub_key for n in self.nodes}) != len(self.nodes):
            raise ValueError("nodes: a consensus key is registered twice")


@dataclass(frozen=True, kw_only=True)
class CycleInfo:
    """Where the chain is in the Race: cycle, phase, the phases' first heights and the seeds."""

    height: int
    cycle: int
    phase: Phase
    phase_starts: dict[Phase, int]
    tally_height: int
    race_seed: bytes
    challenge_seed: bytes
    preset: str


@dataclass(frozen=True, kw_only=True)
class NodeInfo:
    """A registered node's weight, validator power, this cycle's commitment and its last outcome."""

    address: Address
    consensus_pub_key: bytes
    weight: int
    power: int
    committed: int | None
    last_outcome: Outcome | None


@dataclass(frozen=True)
class Nodes:
    """Every registered node, ordered by address."""

    nodes: tuple[NodeInfo, ...]


@dataclass(frozen=True)
class Challenge:
    """The leaves a participant must open this cycle (empty before the challenge seed exists)."""

    cycle: int
    indices: tuple[int, ...]
    count: int


@dataclass(frozen=True)
class RevealInfo:
    """The nonces a participant opened this cycle, and the key they are bound to."""

    cycle: int
    pub_key: bytes
    nonces: tuple[int, ...]


@dataclass(frozen=True)
class Assignments:
    """The participants a validator must check this cycle."""

    cycle: int
    participants: tuple[Address, ...]


PARAMS = query("race/params", NO_ARG, Params)
CYCLE = query("race/cycle", NO_ARG, CycleInfo)
NODES = query("race/nodes", NO_ARG, Nodes)
CHALLENGE = query("race/challenge", ADDRESS_ARG, Challenge)
REVEAL = optional_query("race/reveal", ADDRESS_ARG, RevealInfo)
ASSIGNMENTS = query("race/assignments", ADDRESS_ARG, Assignments)
