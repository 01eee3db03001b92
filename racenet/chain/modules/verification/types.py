"""verification messages, parameters, records, genesis state and queries (whitepaper §6)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from racenet.chain.authority import MAX_WINDOW_BLOCKS, AuthorityMsg, check_params
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import ADDRESS_ARG, HEX_ARG, NO_ARG, optional_query, query
from racenet.chain.scalars import Address, Amount

PPM = 1_000_000
DUTY_DOMAIN = b"racenet/check-duty/v1\x00"
DUTY_VALUE_DOMAIN = b"racenet/check-duty-value/v1\x00"
DUTY_PROOF_BYTES = 96
MAX_EVIDENCE = 64
"""Most answers a failed check may name as its evidence over the cycle."""
"""A duty proof is a compressed G2 signature by the node's G1 beacon key."""


@dataclass(frozen=True)
class Params:
    """Check probabilities, windows and the release rules of held rewards.

    A node with reputation 0 has each task checked with probability `new_node_check_ppm` (parts per million);
    it falls linearly to `trusted_check_ppm` at `trusted_cycles` clean cycles. A task's checks go in blocks up
    to `check_blocks` after its Finish; a failed check opens a re-verification open for `dispute_blocks`. A
    passed check moves `checker_share_percent` of the task's pay to the checker. An executor that finished less
    than `min_work_percent` of the requests routed to it, or a validator that did fewer checks than it owed
    (less `shortfall_sigmas` standard deviations), gets the matching fraction of its held rewards; the rest burns.
    A developer's report of a task costs `report_fee`, returned if the answer is found invalid and paid to the
    verifiers who upheld it otherwise.
    """

    new_node_check_ppm: int = PPM
    trusted_check_ppm: int = 100_000
    trusted_cycles: int = 10
    check_blocks: int = 20
    dispute_blocks: int = 20
    checker_share_percent: int = 50
    min_work_percent: int = 90
    shortfall_sigmas: int = 3
    report_fee: Amount = Amount(1_000_000)

    def validate(self) -> None:
        """Probabilities in (0, 1], windows of at least one block, percentages in range."""
        if not 0 < self.trusted_check_ppm <= self.new_node_check_ppm <= PPM:
            raise ValueError("check probabilities must satisfy 0 < trusted <= new <= 1,000,000 ppm")
        if min(self.trusted_cycles, self.check_blocks, self.dispute_blocks) < 1:
            raise ValueError("trusted_cycles, check_blocks and dispute_blocks must be at least 1")
        if max(self.trusted_cycles, self.check_blocks, self.dispute_blocks) > MAX_WINDOW_BLOCKS:
            raise ValueError(f"trusted_cycles, check_blocks and dispute_blocks are at most {MAX_WINDOW_BLOCKS}")
        if not 0 <= self.checker_share_percent <= 100 or not 0 < self.min_work_percent <= 100:
            raise ValueError("checker_share_percent must be 0-100 and min_work_percent 1-100")

    def check_ppm(self, reputation: int) -> int:
        """The probability (ppm) that a task of a node with this reputation is checked."""
        clean = min(reputation, self.trusted_cycles)
        fall = (self.new_node_check_ppm - self.trusted_check_ppm) * clean // self.trusted_cycles
        return self.new_node_check_ppm - fall


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace the verification params; accepted only from the governance authority (a passed proposal)."""

    TYPE: ClassVar[str] = "verification/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


def duty_message(chain_id: str, request_id: bytes, beacon_output: bytes) -> bytes:
    """What a validator signs with its beacon key to learn (and prove) whether it must check a task."""
    return DUTY_DOMAIN + chain_id.encode() + b"\x00" + request_id + beacon_output


def duty_value(proof: bytes) -> int:
    """The 64-bit random value a duty proof (a unique BLS signature) stands for."""
    return int.from_bytes(hashlib.sha256(DUTY_VALUE_DOMAIN + proof).digest()[:8], "big")


def has_duty(value: int, check_ppm: int, weight: int, total_weight: int) -> bool:
    """Whether a validator with `weight` of `total_weight` must check a task checked with probability check_ppm.

    value / 2^64 < check_ppm / 10^6 × weight / total_weight, in integers: the task's check probability split
    among validators by weight (whitepaper §6: 50% of the weight checks 1 in 20 when 1 in 10 is checked).
    """
    return total_weight > 0 and value * total_weight * PPM < (check_ppm * weight) << 64


class TaskStatus(StrEnum):
    """Where a finished task stands: unchecked, passed a check, under re-verification, or decided."""

    OPEN = "open"
    CHECKED = "checked"
    DISPUTED = "disputed"
    VALID = "valid"
    INVALID = "invalid"


@dataclass(frozen=True)
class Task:
    """A finished request as verification sees it: who ran it, for whom, its pay and its check draw."""

    executor: Address
    developer: Address
    cycle: int
    finish_height: int
    duty_round: int
    check_ppm: int
    cost: Amount
    status: TaskStatus
    checker: bytes = b""
    dispute_deadline: int = 0
    reported: bool = False
    subsidy: Amount = Amount(0)
    evidence: tuple[bytes, ...] = ()
    """Under re-verification: the executor's other answers of the cycle that the failed check says fail with it."""


@dataclass(frozen=True)
class MsgCheck(Msg):
    """A validator's spot check of a task it owed: the duty proof (its beacon-key signature) and the outcome.

    A failure whose answer passes alone names its `evidence`: the executor's other answers of the cycle that,
    with this one, miss more than honest noise allows. Re-verifiers judge exactly those, so honest ones agree.
    """

    TYPE: ClassVar[str] = "verification/Check"
    WORK: ClassVar[int] = 4
    request_id: bytes
    proof: bytes
    passed: bool
    evidence: tuple[bytes, ...] = ()

    def validate(self) -> None:
        """A 32-byte request id, a 96-byte compressed BLS signature, and evidence only for a failure."""
        if len(self.request_id) != 32 or len(self.proof) != DUTY_PROOF_BYTES:
            raise ChainError(Code.INVALID_MESSAGE, "a check needs a 32-byte request id and a 96-byte duty proof")
        if self.evidence and self.passed:
            raise ChainError(Code.INVALID_MESSAGE, "only a failed check names evidence")
        if len(self.evidence) > MAX_EVIDENCE or any(len(e) != 32 for e in self.evidence):
            raise ChainError(Code.INVALID_MESSAGE, f"evidence is at most {MAX_EVIDENCE} 32-byte request ids")
        if len(set(self.evidence)) != len(self.evidence) or self.request_id in self.evidence:
            raise ChainError(Code.INVALID_MESSAGE, "evidence names other requests, each once")


@dataclass(frozen=True)
class MsgReverify(Msg):
    """A weight holder's verdict on a disputed task, after running the check itself."""

    TYPE: ClassVar[str] = "verification/Reverify"
    request_id: bytes
    valid: bool

    def validate(self) -> None:
        """A 32-byte request id."""
        if len(self.request_id) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "request_id must be 32 bytes")


@dataclass(frozen=True)
class MsgReport(Msg):
    """A developer's report that the answer to its request is wrong: pays `report_fee` and opens re-verification."""

    TYPE: ClassVar[str] = "verification/Report"
    request_id: bytes

    def validate(self) -> None:
        """A 32-byte request id."""
        if len(self.request_id) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "request_id must be 32 bytes")


@dataclass(frozen=True)
class ReputationEntry:
    """A node's reputation (genesis and export)."""

    address: Address
    reputation: int


@dataclass(frozen=True)
class VerificationGenesis(GenesisState):
    """Params and reputations. Tasks in flight are not exported: start a chain from an export at a quiet height."""

    params: Params = Params()
    reputations: tuple[ReputationEntry, ...] = ()

    def validate(self) -> None:
        """Valid params; each node listed once."""
        self.params.validate()
        if len({r.address for r in self.reputations}) != len(self.reputations):
            raise ValueError("reputations: a node is listed twice")


@dataclass(frozen=True)
class Reputation:
    """A node's reputation, the check probability its tasks get, and whether it was caught this cycle."""

    address: Address
    reputation: int
    check_ppm: int


@dataclass(frozen=True)
class CycleAccount:
    """What verification holds for a node in one cycle and what decides its release."""

    cycle: int
    held: Amount
    routed: int
    finished: int
    checks_done: int
    caught: bool
    misjudged: int


@dataclass(frozen=True)
class Accounts:
    """A node's open cycle accounts, oldest first."""

    address: Address
    cycles: tuple[CycleAccount, ...]


@dataclass(frozen=True)
class OpenTask:
    """A task still open for checks, with the asking validator's weight share in the task's cycle."""

    request_id: bytes
    task: Task
    weight: int
    total_weight: int


@dataclass(frozen=True)
class OpenTasks:
    """Every task not yet settled, oldest cycle first: what a validator's checker looks through."""

    tasks: tuple[OpenTask, ...]


PARAMS = query("verification/params", NO_ARG, Params)
TASKS = query("verification/tasks", ADDRESS_ARG, OpenTasks)
REPUTATION = query("verification/reputation", ADDRESS_ARG, Reputation)
TASK = optional_query("verification/task", HEX_ARG, Task)
ACCOUNTS = query("verification/accounts", ADDRESS_ARG, Accounts)
