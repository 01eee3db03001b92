"""race messages, parameters, records, genesis state and queries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from racenet.chain.authority import AuthorityMsg, check_params
from racenet.chain.codec import encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import ADDRESS_ARG, NO_ARG, optional_query, query
from racenet.chain.scalars import Address, Amount
from racenet.crypto.keys import PrivateKey

MAX_REVEAL_LEAVES = 256
MAX_PROOF_DEPTH = 40


SAMPLE_SIZE = 32
VERDICT_TABLE = (0,) * SAMPLE_SIZE + (2,)
"""Failures tolerated among n opened nonces, n = 0..SAMPLE_SIZE (`racenet.pow.decision.verdict_table`)."""
REGISTER_DOMAIN = b"racenet/register-node/v1\x00"


MAX_COMMITTEE = 64
"""Most validators drawn to check one claim (each draw costs the begin-block that makes committees)."""
MAX_WEIGHT_CAP_PERCENT = 100_000
"""Highest per-claim weight cap: a claim may bring at most 1000× the previous cycle's total weight."""


@dataclass(frozen=True)
class Params:
    """The Race schedule (in blocks) and its validation rules.

    `preset` names the Race model; its distance threshold (calibrated for one appropriate vector per
    900 nonces) comes with the preset, off chain.

    A cycle is `race_blocks` of mining, whose commitments must be in by the window's last block,
    `reveal_blocks` to open the challenged leaves, `vote_blocks` for each claim's committee to vote and
    `escalation_blocks` for every weight holder to vote on the claims the committee did not settle; the
    tally at the cycle's last block sets the voting weights of the next cycle.

    `verdict_table[n]` is how many of n opened nonces may fail to reproduce in an accepted claim
    (fewer than `sample_size` opened: none). `weight_cap_percent` bounds one claim's weight to that
    percentage of the previous cycle's total weight (0: no cap): 1000 lets a network grow tenfold
    per cycle while no single verdict, right or wrong, can hand out more.
    """

    preset: str = "tiny"
    race_blocks: int = 12
    reveal_blocks: int = 3
    vote_blocks: int = 4
    escalation_blocks: int = 4
    sample_size: int = SAMPLE_SIZE
    verdict_table: tuple[int, ...] = VERDICT_TABLE
    validators_per_participant: int = 3
    weight_cap_percent: int = 1000

    def validate(self) -> None:
        """Phases long enough, a verdict table that rejects a claim whose every opened nonce failed."""
        if min(self.reveal_blocks, self.vote_blocks, self.escalation_blocks) < 1 or self.race_blocks < 2:
            raise ValueError("the race needs at least two blocks and every other phase at least one")
        if not 1 <= self.sample_size <= MAX_REVEAL_LEAVES // 2:
            raise ValueError(f"sample_size must be 1 to {MAX_REVEAL_LEAVES // 2}")
        if len(self.verdict_table) != self.sample_size + 1:
            raise ValueError("verdict_table needs one entry for each count of opened nonces, 0 to sample_size")
        if self.verdict_table[0] != 0 or any(not 0 <= t < max(n, 1) for n, t in enumerate(self.verdict_table)):
            raise ValueError("verdict_table[n] must be below n: a claim whose every opened nonce failed is rejected")
        if not 1 <= self.validators_per_participant <= MAX_COMMITTEE:
            raise ValueError(f"validators_per_participant must be 1 to {MAX_COMMITTEE}")
        if not 0 <= self.weight_cap_percent <= MAX_WEIGHT_CAP_PERCENT:
            raise ValueError(f"weight_cap_percent must be 0 to {MAX_WEIGHT_CAP_PERCENT}")

    def verdict(self, checked: int, failed: int) -> bool:
        """Whether a claim with `failed` of `checked` opened nonces not reproducing is accepted."""
        return 0 < checked <= self.sample_size and failed <= self.verdict_table[checked]

    def cycle_shape(self) -> tuple[int, int, int, int]:
        """The blocks of each phase: fixed at genesis, since every cycle number on chain derives from them."""
        return (self.race_blocks, self.reveal_blocks, self.vote_blocks, self.escalation_blocks)


@dataclass(frozen=True)
class ScheduledParams:
    """Params a passed proposal set for a cycle, applied at its first block."""

    cycle: int
    params: Params


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace race's params from the next cycle on (the phase lengths stay); only from the governance authority."""

    TYPE: ClassVar[str] = "race/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


class Phase(StrEnum):
    """The phases of a cycle, in order."""

    RACE = "race"
    REVEAL = "reveal"
    VOTE = "vote"
    ESCALATE = "escalate"


def possession_message(chain_id: str, address: bytes) -> bytes:
    """What a consensus key signs to register for `address`: only its holder can bind it to an account."""
    return REGISTER_DOMAIN + chain_id.encode() + b"\x00" + address


@dataclass(frozen=True)
class MsgRegisterNode(Msg):
    """Bind the signing account to the ed25519 consensus key its Race weight powers, proving the key is held."""

    TYPE: ClassVar[str] = "race/RegisterNode"
    consensus_pub_key: bytes
    proof: bytes

    def validate(self) -> None:
        """A 32-byte ed25519 public key and a 64-byte signature."""
        if len(self.consensus_pub_key) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "consensus key must be a 32-byte ed25519 public key")
        if len(self.proof) != 64:
            raise ChainError(Code.INVALID_MESSAGE, "proof must be the consensus key's 64-byte signature")


def register_node_msg(consensus_key: PrivateKey, chain_id: str, address: bytes) -> MsgRegisterNode:
    """The RegisterNode message binding `address` to `consensus_key`, signed by that key."""
    proof = consensus_key.sign(possession_message(chain_id, address))
    return MsgRegisterNode(consensus_key.public_key.raw, proof)


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
    """A validator's check of one participant's revealed nonces: the positions that did not reproduce.

    The chain turns the counts into the verdict (`Params.verdict`); a voter states what it computed, not
    whether it likes the claim.
    """

    TYPE: ClassVar[str] = "race/Vote"
    cycle: int
    participant: bytes
    failed: tuple[int, ...]

    def validate(self) -> None:
        """A 20-byte participant address and distinct, increasing positions."""
        if len(self.participant) != 20:
            raise ChainError(Code.INVALID_MESSAGE, "participant must be a 20-byte address")
        if len(self.failed) > MAX_REVEAL_LEAVES or any(
            b <= a for a, b in zip(self.failed, self.failed[1:], strict=False)
        ):
            raise ChainError(Code.INVALID_MESSAGE, "failed lists distinct positions in increasing order")


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
    """A validator's stored vote: the positions it found failing and the verdict the chain drew from them."""

    failed: tuple[int, ...]
    accept: bool


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
    """How a participant's proof fared in a cycle's tally: what it claimed, the weight it got, who checked it."""

    cycle: int
    claimed: Amount
    weight: Amount
    status: OutcomeStatus
    committee: tuple[Address, ...] = ()
    escalated: bool = False


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
    """Params, the first cycle's start height (0: the chain's first block), registered nodes, and params governance
    set for a cycle that has not started yet."""

    params: Params = Params()
    start: int = 0
    nodes: tuple[RaceNode, ...] = ()
    next_params: tuple[ScheduledParams, ...] = ()

    def validate(self) -> None:
        """Valid params; each account and each consensus key registered once."""
        for params in (self.params, *(s.params for s in self.next_params)):
            params.validate()
        if len({n.address for n in self.nodes}) != len(self.nodes):
            raise ValueError("nodes: an account is registered twice")
        if len({n.consensus_pub_key for n in self.nodes}) != len(self.nodes):
            raise ValueError("nodes: a consensus key is registered twice")


@dataclass(frozen=True, kw_only=True)
class CycleInfo:
    """Where the chain is in the Race: cycle, phase, the phases' first heights, and the seeds with the beacon
    rounds they hash (0: not bound yet)."""

    height: int
    cycle: int
    phase: Phase
    phase_starts: dict[Phase, int]
    tally_height: int
    race_round: int
    race_seed: bytes
    challenge_round: int
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


@dataclass(frozen=True, kw_only=True)
class VoteInfo:
    """One vote on a claim: who cast it, with what weight, how many opened nonces it found failing, the verdict."""

    voter: Address
    weight: int
    failed: int
    accept: bool


@dataclass(frozen=True, kw_only=True)
class ClaimInfo:
    """A claim of this cycle: its count, committee, votes, whether it escalated, and its standing so far."""

    participant: Address
    count: int
    revealed: bool
    committee: tuple[Address, ...]
    votes: tuple[VoteInfo, ...]
    escalated: bool
    standing: str


@dataclass(frozen=True)
class Claims:
    """Every claim of the current cycle, ordered by participant."""

    cycle: int
    claims: tuple[ClaimInfo, ...]


@dataclass(frozen=True, kw_only=True)
class Misvote:
    """A voter on the losing side of escalated decisions in a cycle (it loses that cycle's reward share)."""

    cycle: int
    voter: Address
    count: int


@dataclass(frozen=True)
class Misvotes:
    """The voters recorded on the losing side of escalated decisions, by cycle and voter."""

    misvotes: tuple[Misvote, ...]


PARAMS = query("race/params", NO_ARG, Params)
CYCLE = query("race/cycle", NO_ARG, CycleInfo)
NODES = query("race/nodes", NO_ARG, Nodes)
CHALLENGE = query("race/challenge", ADDRESS_ARG, Challenge)
REVEAL = optional_query("race/reveal", ADDRESS_ARG, RevealInfo)
ASSIGNMENTS = query("race/assignments", ADDRESS_ARG, Assignments)
CLAIMS = query("race/claims", NO_ARG, Claims)
MISVOTES = query("race/misvotes", NO_ARG, Misvotes)
