"""training messages, parameters, records, genesis state and queries (issue 14; whitepaper §8, Appendices K, L).

Hyperparameters are integers: learning rates and the outer momentum in millionths (`PPM`), so a job written as
AdamW lr 3e-3, outer lr 0.7 and outer momentum 0.9 carries 3_000, 700_000 and 900_000.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from racenet.chain.authority import MAX_WINDOW_BLOCKS, AuthorityMsg, check_params
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import ADDRESS_ARG, NO_ARG, TEXT_ARG, optional_query, query
from racenet.chain.scalars import MAX_AMOUNT, Address, Amount

PPM = 1_000_000
MAX_ARCHITECTURE = 64
"""Longest architecture name (letters, digits, `.`, `_`, `-`)."""
MAX_LOCATION_BYTES = 256
"""Longest dataset location (printable ASCII: a URL, a path, a Debian package name; ASCII so that no node's Unicode
tables decide what is valid)."""
MAX_ENDPOINT = 261
"""Longest rendezvous endpoint: a host name of at most 253 characters, `:` and a port."""
MAX_INNER_STEPS = 1_000_000
MAX_OUTER_LR_PPM = 10 * PPM
MAX_VALIDATORS = 16
MAX_PARTICIPANTS = 256
MAX_ROUNDS = 1_000_000
_ARCHITECTURE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _invalid(message: str) -> ChainError:
    return ChainError(Code.INVALID_MESSAGE, message)


def _check_u64(**values: int) -> None:
    for name, value in values.items():
        if not 0 <= value <= MAX_AMOUNT:
            raise _invalid(f"{name} must be an unsigned 64-bit integer")


def _check_hashes(**values: bytes) -> None:
    for name, value in values.items():
        if len(value) != 32:
            raise _invalid(f"{name} must be 32 bytes")


def check_endpoint(endpoint: str) -> None:
    """Raise ChainError(INVALID_MESSAGE) unless `endpoint` is `host:port` in printable ASCII, port 1-65535."""
    host, colon, port = endpoint.rpartition(":")
    if not colon or not host or len(endpoint) > MAX_ENDPOINT:
        raise _invalid(f"a rendezvous endpoint is host:port, at most {MAX_ENDPOINT} characters")
    if any(not 33 <= ord(c) < 127 for c in host):
        raise _invalid("the endpoint's host must be printable ASCII without spaces")
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise _invalid("the endpoint's port must be 1-65535")


@dataclass(frozen=True)
class Params:
    """Windows (blocks) and draws of the training module.

    A job's first round starts `start_blocks` after it is created (a job nobody joined by then ends); each
    round closes when every participant reported or `round_blocks` after it started. A closed round is audited
    with probability `audit_ppm` (from a beacon round after the close); an audited round's participants then
    commit the chosen segment within `commit_blocks`, `validators_per_segment` validators judge each within
    `verdict_blocks`, and a failed verdict is re-verified for `dispute_blocks`. An audited round gets a honeypot
    with probability `honeypot_ppm`. A job has at most `max_rounds` rounds and `max_participants` participants.
    """

    start_blocks: int = 5
    round_blocks: int = 20
    commit_blocks: int = 10
    verdict_blocks: int = 10
    dispute_blocks: int = 20
    audit_ppm: int = 250_000
    honeypot_ppm: int = 100_000
    validators_per_segment: int = 2
    max_rounds: int = 10_000
    max_participants: int = 64

    def validate(self) -> None:
        """Windows of 1 to MAX_WINDOW_BLOCKS blocks, probabilities in ppm, bounded counts."""
        windows = (self.start_blocks, self.round_blocks, self.commit_blocks, self.verdict_blocks, self.dispute_blocks)
        if not all(1 <= w <= MAX_WINDOW_BLOCKS for w in windows):
            raise ValueError(f"every window is 1 to {MAX_WINDOW_BLOCKS} blocks")
        if not (0 <= self.audit_ppm <= PPM and 0 <= self.honeypot_ppm <= PPM):
            raise ValueError("audit_ppm and honeypot_ppm are 0 to 1,000,000")
        if not 1 <= self.validators_per_segment <= MAX_VALIDATORS:
            raise ValueError(f"validators_per_segment is 1 to {MAX_VALIDATORS}")
        if not (1 <= self.max_rounds <= MAX_ROUNDS and 1 <= self.max_participants <= MAX_PARTICIPANTS):
            raise ValueError(f"max_rounds is 1 to {MAX_ROUNDS}, max_participants 1 to {MAX_PARTICIPANTS}")


@dataclass(frozen=True, kw_only=True)
class MsgCreateJob(Msg):
    """A developer's DiLoCo job: model, dataset, hyperparameters, rounds, seats and the budget it escrows.

    A round is `inner_steps` (H) inner AdamW steps at `inner_lr_ppm`, then the outer Nesterov step at `outer_lr_ppm`
    with `outer_momentum_ppm`; proof-of-learning cuts the H steps into segments of `segment_steps` (k).
    """

    TYPE: ClassVar[str] = "training/CreateJob"
    architecture: str
    weights_hash: bytes
    dataset_hash: bytes
    dataset_location: str
    inner_lr_ppm: int
    inner_steps: int
    segment_steps: int
    outer_lr_ppm: int
    outer_momentum_ppm: int
    rounds: int
    max_participants: int
    budget: int

    def validate(self) -> None:
        """Named model and data, hyperparameters and counts within bounds, a positive budget."""
        if not 1 <= len(self.architecture) <= MAX_ARCHITECTURE or not set(self.architecture) <= _ARCHITECTURE_CHARS:
            raise _invalid(f"the architecture is 1-{MAX_ARCHITECTURE} letters, digits, '.', '_' or '-'")
        _check_hashes(weights_hash=self.weights_hash, dataset_hash=self.dataset_hash)
        location = self.dataset_location
        if not 1 <= len(location) <= MAX_LOCATION_BYTES or any(not 32 <= ord(c) < 127 for c in location):
            raise _invalid(f"the dataset location is 1-{MAX_LOCATION_BYTES} printable ASCII characters")
        if not 1 <= self.inner_lr_ppm <= PPM or not 1 <= self.outer_lr_ppm <= MAX_OUTER_LR_PPM:
            raise _invalid(f"inner_lr_ppm is 1 to {PPM}, outer_lr_ppm 1 to {MAX_OUTER_LR_PPM}")
        if not 0 <= self.outer_momentum_ppm < PPM:
            raise _invalid(f"outer_momentum_ppm is 0 to {PPM - 1}")
        if not 1 <= self.segment_steps <= self.inner_steps <= MAX_INNER_STEPS:
            raise _invalid(f"1 <= segment_steps <= inner_steps <= {MAX_INNER_STEPS}")
        if self.inner_steps % self.segment_steps:
            raise _invalid("segment_steps must divide inner_steps (a round is whole proof-of-learning segments)")
        if not 1 <= self.rounds <= MAX_ROUNDS or not 1 <= self.max_participants <= MAX_PARTICIPANTS:
            raise _invalid(f"rounds is 1 to {MAX_ROUNDS}, max_participants 1 to {MAX_PARTICIPANTS}")
        _check_u64(budget=self.budget)
        if self.budget < 1:
            raise _invalid("a job's budget must be positive")


@dataclass(frozen=True)
class MsgJoin(Msg):
    """A Race weight holder joins a job with its rendezvous endpoint (admitted at the next round boundary)."""

    TYPE: ClassVar[str] = "training/Join"
    job_id: int
    endpoint: str

    def validate(self) -> None:
        """A u64 job id and a host:port endpoint."""
        _check_u64(job_id=self.job_id)
        check_endpoint(self.endpoint)


@dataclass(frozen=True)
class MsgRoundDone(Msg):
    """A participant finished a round: `commitment` is the hash of its round trace (`racenet.train.pol`), fixed
    before the beacon picks which round is audited."""

    TYPE: ClassVar[str] = "training/RoundDone"
    job_id: int
    round: int
    commitment: bytes

    def validate(self) -> None:
        """u64 numbers and a 32-byte commitment."""
        _check_u64(job_id=self.job_id, round=self.round)
        _check_hashes(commitment=self.commitment)


@dataclass(frozen=True, kw_only=True)
class MsgCommitSegment(Msg):
    """A participant's proof-of-learning record of the segment the beacon chose in an audited round."""

    TYPE: ClassVar[str] = "training/CommitSegment"
    job_id: int
    round: int
    step: int
    prev_weights_hash: bytes
    weights_hash: bytes
    optimizer_hash: bytes
    data_indices_hash: bytes

    def validate(self) -> None:
        """u64 numbers and four 32-byte hashes."""
        _check_u64(job_id=self.job_id, round=self.round, step=self.step)
        _check_hashes(
            prev_weights_hash=self.prev_weights_hash,
            weights_hash=self.weights_hash,
            optimizer_hash=self.optimizer_hash,
            data_indices_hash=self.data_indices_hash,
        )


@dataclass(frozen=True)
class MsgPolVerdict(Msg):
    """A validator's verdict on a committed segment (a drawn one), or a weight holder's in its re-verification."""

    TYPE: ClassVar[str] = "training/PolVerdict"
    job_id: int
    round: int
    participant: bytes
    valid: bool

    def validate(self) -> None:
        """u64 numbers and a 20-byte participant."""
        _check_u64(job_id=self.job_id, round=self.round)
        if len(self.participant) != 20:
            raise _invalid("participant must be a 20-byte address")


@dataclass(frozen=True)
class MsgCancelJob(Msg):
    """The creator stops a job: no round starts any more; rounds already closed are paid, the rest refunded."""

    TYPE: ClassVar[str] = "training/CancelJob"
    job_id: int

    def validate(self) -> None:
        """A u64 job id."""
        _check_u64(job_id=self.job_id)


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace the training params; accepted only from the governance authority (a passed proposal)."""

    TYPE: ClassVar[str] = "training/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True)
class MsgCreateGrantJob(AuthorityMsg):
    """A job the training fund pays (whitepaper Appendix K): only a passed proposal sends it."""

    TYPE: ClassVar[str] = "training/CreateGrantJob"
    job: MsgCreateJob

    def validate(self) -> None:
        """The job is valid as a developer's would be."""
        self.job.validate()


class JobStatus(StrEnum):
    """Waiting for its first round, running rounds, settling its proofs of learning, or over."""

    WAITING = "waiting"
    RUNNING = "running"
    SETTLING = "settling"
    FINISHED = "finished"
    CANCELLED = "cancelled"


@dataclass(frozen=True, kw_only=True)
class Job:
    """A training job: what it trains, how, who pays, and where its rounds stand.

    `budget_left` is the budget not yet earned by a closed round; earned shares are held per participant until
    the job settles. `round` is the current (or last) round; `round_deadline` the height it closes at latest.
    """

    id: int
    creator: Address
    architecture: str
    weights_hash: bytes
    dataset_hash: bytes
    dataset_location: str
    inner_lr_ppm: int
    inner_steps: int
    segment_steps: int
    outer_lr_ppm: int
    outer_momentum_ppm: int
    rounds: int
    max_participants: int
    budget: Amount
    budget_left: Amount
    status: JobStatus
    created_height: int
    start_height: int
    round: int = 0
    round_start: int = 0
    round_deadline: int = 0
    cancelled: bool = False


class MemberStatus(StrEnum):
    """A participant takes part, was dropped for missing a round's deadline, or was caught by proof-of-learning."""

    ACTIVE = "active"
    DROPPED = "dropped"
    CAUGHT = "caught"


@dataclass(frozen=True)
class Member:
    """A participant of a job: its endpoint, the first round it takes part in, its standing, and the last round it
    reported (0: none). A member reports every round from `from_round` to `reported_through` (a miss drops it), so
    the reporters of a closed round are the members with `from_round <= round <= reported_through`: the group
    that averages that round's pseudo-gradients off chain."""

    endpoint: str
    from_round: int
    status: MemberStatus
    joined_height: int
    reported_through: int = 0


@dataclass(frozen=True)
class Slot:
    """A participant's place in one round: its rank (position by address) and its round-trace commitment."""

    rank: int
    commitment: bytes = b""


class SegmentStatus(StrEnum):
    """A proof-of-learning record: awaited from the participant, committed and being judged, passed, under
    re-verification, decided valid or invalid, or never committed (missed)."""

    AWAITING = "awaiting"
    COMMITTED = "committed"
    PASSED = "passed"
    DISPUTED = "disputed"
    VALID = "valid"
    INVALID = "invalid"
    MISSED = "missed"


OPEN_SEGMENT = (SegmentStatus.AWAITING, SegmentStatus.COMMITTED, SegmentStatus.DISPUTED)


@dataclass(frozen=True, kw_only=True)
class Segment:
    """The segment of an audited round one participant must open: the chosen step (its first; it runs
    `segment_steps` steps), the height its current window ends, the audit's seed, the round-trace commitment its
    `MsgRoundDone` carried (the segment's hashes must be entries of that trace), its hashes once committed and the
    validators drawn to judge it."""

    step: int
    status: SegmentStatus
    deadline: int
    seed: bytes
    trace: bytes
    prev_weights_hash: bytes = b""
    weights_hash: bytes = b""
    optimizer_hash: bytes = b""
    data_indices_hash: bytes = b""
    validators: tuple[Address, ...] = ()


@dataclass(frozen=True)
class TrainingGenesis(GenesisState):
    """Params and the next job id. Jobs in flight are not exported: start a chain from an export at a quiet
    height (as for verification's tasks)."""

    params: Params = Params()
    next_job_id: int = 1

    def validate(self) -> None:
        """Valid params and a positive next job id."""
        self.params.validate()
        if not 1 <= self.next_job_id <= MAX_AMOUNT:
            raise ValueError("next_job_id must be a positive u64")


@dataclass(frozen=True)
class Jobs:
    """Every job, by id."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True, kw_only=True)
class Participant:
    """A job's participant as the query shows it: its standing, when it joined, the last round it reported, its
    rank in the current round (if it is in it), whether it reported the round, and the reward held for it."""

    address: Address
    endpoint: str
    status: MemberStatus
    from_round: int
    joined_height: int
    reported_through: int
    in_round: bool
    rank: int
    reported: bool
    held: Amount


@dataclass(frozen=True)
class Participants:
    """A job's current round and its participants in address order (the round's ranks)."""

    job_id: int
    round: int
    participants: tuple[Participant, ...]


@dataclass(frozen=True)
class SegmentInfo:
    """One proof-of-learning record: whose, of which round, and where it stands."""

    round: int
    participant: Address
    segment: Segment


@dataclass(frozen=True)
class Segments:
    """A job's proof-of-learning records, by round and participant."""

    job_id: int
    segments: tuple[SegmentInfo, ...]


@dataclass(frozen=True)
class Misjudged:
    """How many proof-of-learning verdicts of a validator were wrong (a passed honeypot, a losing vote)."""

    address: Address
    count: int


PARAMS = query("training/params", NO_ARG, Params)
JOB = optional_query("training/job", TEXT_ARG, Job)
JOBS = query("training/jobs", NO_ARG, Jobs)
PARTICIPANTS = query("training/participants", TEXT_ARG, Participants)
SEGMENTS = query("training/segments", TEXT_ARG, Segments)
MISJUDGED = query("training/misjudged", ADDRESS_ARG, Misjudged)
