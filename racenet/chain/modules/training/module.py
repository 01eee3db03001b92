"""training: DiLoCo jobs coordinated on chain, proof-of-learning records and their verdicts (issue 14; whitepaper
§8, Appendices K, L). docs/training.md, "On chain", describes the protocol; in short:

- A developer creates a job (`MsgCreateJob`) and escrows its budget. Race weight holders join (`MsgJoin`) with a
  rendezvous endpoint; a joiner takes part from the next round boundary. The first round starts `start_blocks`
  after creation (a job nobody joined by then ends, refunded); each round's members are ranked by address at its
  start.
- A round closes when every member reported (`MsgRoundDone`, with the hash of its round trace) or at its deadline;
  a member that missed it is dropped, and the job goes on while one is left. Each closed round earns its share of
  the budget left (left / rounds left), split equally among the members that reported; shares are held per
  participant until the job settles.
- After a round closes, a beacon round unknown until then decides whether it is audited and which segment (step)
  each reporter must open (`MsgCommitSegment`); validators drawn by weight among nodes outside the job judge it
  (`MsgPolVerdict`). A failed verdict opens re-verification by all weight holders, decided by more than half of
  the total weight (the participant's own weight counts for its segment); a segment found invalid, or never
  committed, forfeits the participant's held rewards to the payer. An audited round may also get a honeypot: a
  segment the protocol planted, which validators must reject; one that passes it is recorded as misjudged.
- Once the last round closed (or nobody is left, or the creator cancelled) and every audit is decided, the held
  rewards are paid and what is left of the budget goes back to the payer (the training fund for a job the
  governance authority created).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import ClassVar, Protocol

from racenet.chain.authority import GOV_AUTHORITY, require_authority
from racenet.chain.collections import (
    ADDRESS,
    U64,
    Composite,
    EscrowIds,
    Item,
    KeySet,
    Map,
    Record,
    UintItem,
    UintMap,
    pair,
    triple,
)
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import (
    Context,
    HandlerTable,
    Invariant,
    InvariantBroken,
    Module,
    ModuleKeeper,
    QueryTable,
    TxContext,
    isolated,
)
from racenet.chain.modules.tokenomics.types import TRAINING_FUND
from racenet.chain.modules.training.types import (
    JOB,
    JOBS,
    MISJUDGED,
    OPEN_SEGMENT,
    PARAMS,
    PARTICIPANTS,
    PPM,
    SEGMENTS,
    Job,
    Jobs,
    JobStatus,
    Member,
    MemberStatus,
    Misjudged,
    MsgCancelJob,
    MsgCommitSegment,
    MsgCreateGrantJob,
    MsgCreateJob,
    MsgJoin,
    MsgPolVerdict,
    MsgRoundDone,
    MsgUpdateParams,
    Params,
    Participant,
    Participants,
    Segment,
    SegmentInfo,
    Segments,
    SegmentStatus,
    Slot,
    TrainingGenesis,
)
from racenet.chain.sampling import draw, weighted_draw
from racenet.chain.scalars import Address, Amount
from racenet.crypto.address import encode_address

NAME = "training"
PASS, FAIL = 1, 2
"""Stored verdicts (absence means none)."""
AUDIT_DOMAIN = b"racenet/training/audit/v1\x00"
HONEYPOT_DOMAIN = b"racenet/training/honeypot/v1\x00"
LIVE = (JobStatus.WAITING, JobStatus.RUNNING)
SegmentKey = tuple[int, int, bytes]
"""(job id, round, participant)."""


class BankKeeper(Protocol):
    """What training needs of bank: the escrow of each job's budget."""

    def lock(self, ctx: Context, owner: bytes, module: str, escrow_id: bytes, amount: int) -> None: ...
    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None: ...
    def escrow_balance(self, ctx: Context, module: str, escrow_id: bytes) -> int: ...
    def module_escrows(self, ctx: Context, module: str) -> list[tuple[bytes, int]]: ...


class RaceKeeper(Protocol):
    """What training needs of race: who holds weight (joins, validator draws, re-verification)."""

    def weight(self, ctx: Context, address: bytes) -> int: ...
    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]: ...


class Penalties(Protocol):
    """What training needs from verification: a wrong verdict costs the validator its cycle reward share."""

    def misjudge_now(self, ctx: Context, node: bytes, what: str) -> None: ...


class BeaconKeeper(Protocol):
    """What training needs of the beacon: a round unknown when a training round closes, and its output."""

    def round_after(self, ctx: Context, height: int) -> int: ...
    def output(self, ctx: Context, round_: int) -> bytes: ...


def audit_seed(beacon_output: bytes, job_id: int, round_: int) -> bytes:
    """The seed of a closed round's audit: whether it is audited, its step, its honeypot and its validators."""
    return hashlib.sha256(AUDIT_DOMAIN + beacon_output + job_id.to_bytes(8, "big") + round_.to_bytes(8, "big")).digest()


def honeypot_hash(seed: bytes, what: bytes) -> bytes:
    """One of a planted segment's hashes, named by `what`; its address is the first 20 bytes of b"participant"'s."""
    return hashlib.sha256(HONEYPOT_DOMAIN + seed + what).digest()


def _job_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"a job id is a positive integer, got {text!r}")
    return int(text)


class Keeper(ModuleKeeper):
    """The only reader and writer of training state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    next_id = UintItem(b"next_id")
    jobs = Map(b"job/", U64, Record(Job))
    members = Map(b"member/", pair(U64, ADDRESS), Record(Member))
    rosters = Map(b"roster/", triple(U64, U64, ADDRESS), Record(Slot))  # (job, round, member)
    held = UintMap(b"held/", pair(U64, ADDRESS))
    draws = UintMap(b"draw/", pair(U64, U64))  # (job, closed round) → the beacon round that decides its audit
    segments = Map(b"segment/", triple(U64, U64, ADDRESS), Record(Segment))
    honeypots = KeySet(b"honeypot/", triple(U64, U64, ADDRESS))
    votes = UintMap(b"vote/", Composite(U64, U64, ADDRESS, ADDRESS))  # (job, round, participant, voter)
    misjudged = UintMap(b"misjudged/", ADDRESS)
    starts = KeySet(b"start/", pair(U64, U64))  # (first round's height, job)
    settling = KeySet(b"settling/", U64)
    round_ends = KeySet(b"round_end/", pair(U64, U64))  # (deadline, job)
    segment_ends = KeySet(b"segment_end/", triple(U64, U64, U64))  # (deadline, job, round)
    escrows = EscrowIds(b"job/", U64)

    def __init__(self, bank: BankKeeper, race: RaceKeeper, beacon: BeaconKeeper) -> None:
        self.bank = bank
        self.race = race
        self.beacon = beacon
        self.penalties: Penalties | None = None

    def use_penalties(self, penalties: Penalties) -> None:
        """Wire verification's reward settlement, which takes a misjudging validator's cycle share."""
        self.penalties = penalties

    def job(self, ctx: Context, job_id: int) -> Job:
        """A job by id; NOT_FOUND if there is none."""
        found = self.jobs.get(ctx, job_id)
        if found is None:
            raise ChainError(Code.NOT_FOUND, f"no training job {job_id}")
        return found

    @staticmethod
    def payer(job: Job) -> bytes:
        """Who gets a job's leftover budget and forfeited rewards: its creator, or the training fund if the
        governance authority created it (the hook for grant-funded jobs, docs/training.md)."""
        return TRAINING_FUND if job.creator == GOV_AUTHORITY else job.creator

    def _active(self, ctx: Context, job_id: int, round_: int) -> list[bytes]:
        """The active members that take part in `round_`, in address order."""
        return [
            address
            for (_, address), m in self.members.items(ctx, (job_id,))
            if m.status == MemberStatus.ACTIVE and m.from_round <= round_
        ]

    def _set_member_status(self, ctx: Context, job_id: int, address: bytes, status: MemberStatus) -> None:
        member = self.members.get(ctx, (job_id, address))
        if member is not None:
            self.members.set(ctx, (job_id, address), dataclasses.replace(member, status=status))

    # --- messages ---------------------------------------------------------------------------------

    def handle_create_job(self, ctx: TxContext, msg: MsgCreateJob) -> bytes:
        """training/CreateJob: escrow the budget and open the job for joins; the result is its id (8 bytes)."""
        return self._create(ctx, ctx.tx.signer, msg)

    def handle_create_grant_job(self, ctx: TxContext, msg: MsgCreateGrantJob) -> bytes:
        """training/CreateGrantJob: governance funds a job from the training fund (Appendix K), which gets its
        refunds and forfeits; the job's creator is the governance authority."""
        require_authority(ctx, "fund training jobs from the training fund")
        return self._create(ctx, TRAINING_FUND, msg.job)

    def _create(self, ctx: TxContext, payer: bytes, msg: MsgCreateJob) -> bytes:
        params = self.params.get(ctx)
        if msg.rounds > params.max_rounds or msg.max_participants > params.max_participants:
            raise ChainError(
                Code.OUT_OF_RANGE,
                f"a job has at most {params.max_rounds} rounds and {params.max_participants} participants",
            )
        job_id = max(int(self.next_id.get(ctx)), 1)
        self.next_id.set(ctx, Amount(job_id) + 1)
        self.bank.lock(ctx, payer, NAME, self.escrows.id(job_id), msg.budget)
        job = Job(
            id=job_id,
            creator=Address(ctx.tx.signer),
            architecture=msg.architecture,
            weights_hash=msg.weights_hash,
            dataset_hash=msg.dataset_hash,
            dataset_location=msg.dataset_location,
            inner_lr_ppm=msg.inner_lr_ppm,
            inner_steps=msg.inner_steps,
            segment_steps=msg.segment_steps,
            outer_lr_ppm=msg.outer_lr_ppm,
            outer_momentum_ppm=msg.outer_momentum_ppm,
            rounds=msg.rounds,
            max_participants=msg.max_participants,
            budget=Amount(msg.budget),
            budget_left=Amount(msg.budget),
            status=JobStatus.WAITING,
            created_height=ctx.block.height,
            start_height=ctx.block.height + params.start_blocks,
        )
        self.jobs.set(ctx, job_id, job)
        self.starts.add(ctx, (job.start_height, job_id))
        ctx.emit("training_job", id=str(job_id), creator=encode_address(ctx.tx.signer), budget=str(msg.budget))
        return job_id.to_bytes(8, "big")

    def handle_join(self, ctx: TxContext, msg: MsgJoin) -> None:
        """training/Join: a Race weight holder joins; it takes part from the next round boundary."""
        job = self.job(ctx, msg.job_id)
        signer = ctx.tx.signer
        if job.status not in LIVE or job.round >= job.rounds:
            raise ChainError(
                Code.OUT_OF_RANGE, f"job {job.id} is {job.status.value} in round {job.round}: no next round"
            )
        if self.race.weight(ctx, signer) <= 0:
            raise ChainError(Code.UNAUTHORIZED, "only holders of Race weight join training jobs")
        if self.members.has(ctx, (job.id, signer)):
            raise ChainError(Code.ALREADY_DONE, "this account already joined the job")
        active = sum(m.status == MemberStatus.ACTIVE for _, m in self.members.items(ctx, (job.id,)))
        if active >= job.max_participants:
            raise ChainError(Code.OUT_OF_RANGE, f"job {job.id} has its {job.max_participants} participants")
        member = Member(msg.endpoint, job.round + 1, MemberStatus.ACTIVE, ctx.block.height)
        self.members.set(ctx, (job.id, signer), member)
        ctx.emit("training_join", job=str(job.id), participant=encode_address(signer), from_round=str(job.round + 1))

    def handle_round_done(self, ctx: TxContext, msg: MsgRoundDone) -> None:
        """training/RoundDone: a member reports its round; the round closes once every active member did."""
        job = self.job(ctx, msg.job_id)
        if job.status != JobStatus.RUNNING or msg.round != job.round:
            raise ChainError(Code.OUT_OF_RANGE, f"round {msg.round} is not job {job.id}'s current round")
        key = (job.id, job.round, ctx.tx.signer)
        slot = self.rosters.get(ctx, key)
        member = self.members.get(ctx, (job.id, ctx.tx.signer))
        if slot is None or member is None or member.status != MemberStatus.ACTIVE:
            raise ChainError(Code.UNAUTHORIZED, "the signer is not an active participant of this round")
        if slot.commitment:
            raise ChainError(Code.ALREADY_DONE, "this participant already reported the round")
        self.rosters.set(ctx, key, dataclasses.replace(slot, commitment=msg.commitment))
        self.members.set(ctx, (job.id, key[2]), dataclasses.replace(member, reported_through=job.round))
        ctx.emit("training_round_done", job=str(job.id), round=str(job.round), participant=encode_address(key[2]))
        active = set(self._active(ctx, job.id, job.round))
        if all(s.commitment for (_, _, a), s in self.rosters.items(ctx, (job.id, job.round)) if a in active):
            self._close_round(ctx, job)

    def handle_commit_segment(self, ctx: TxContext, msg: MsgCommitSegment) -> None:
        """training/CommitSegment: a participant opens the segment chosen for it; validators are drawn to judge."""
        key = (msg.job_id, msg.round, ctx.tx.signer)
        segment = self.segments.get(ctx, key)
        if segment is None:
            raise ChainError(Code.NOT_FOUND, "no segment of the signer is awaited in this round")
        if segment.status != SegmentStatus.AWAITING:
            raise ChainError(Code.ALREADY_DONE, f"the segment is already {segment.status.value}")
        if msg.step != segment.step:
            raise ChainError(Code.INVALID_MESSAGE, f"the beacon chose the segment starting at step {segment.step}")
        validators = self._draw_validators(ctx, msg.job_id, segment.seed, ctx.tx.signer)
        deadline = ctx.block.height + self.params.get(ctx).verdict_blocks
        committed = dataclasses.replace(
            segment,
            status=SegmentStatus.COMMITTED if validators else SegmentStatus.PASSED,
            deadline=deadline,
            prev_weights_hash=msg.prev_weights_hash,
            weights_hash=msg.weights_hash,
            optimizer_hash=msg.optimizer_hash,
            data_indices_hash=msg.data_indices_hash,
            validators=tuple(Address(v) for v in validators),
        )
        self.segments.set(ctx, key, committed)
        if validators:
            self.segment_ends.add(ctx, (deadline, msg.job_id, msg.round))
        ctx.emit("training_segment", job=str(msg.job_id), round=str(msg.round), participant=encode_address(key[2]))

    def handle_pol_verdict(self, ctx: TxContext, msg: MsgPolVerdict) -> None:
        """training/PolVerdict: a drawn validator judges a committed segment (a failure opens re-verification),
        or any weight holder but the participant votes in a re-verification."""
        key = (msg.job_id, msg.round, msg.participant)
        segment = self.segments.get(ctx, key)
        signer = ctx.tx.signer
        if segment is None:
            raise ChainError(Code.NOT_FOUND, "no such proof-of-learning segment")
        if self.votes.has(ctx, (*key, signer)):
            raise ChainError(Code.ALREADY_DONE, "this account already judged the segment")
        if segment.status == SegmentStatus.COMMITTED:
            if signer not in segment.validators:
                raise ChainError(Code.UNAUTHORIZED, "the signer was not drawn to judge this segment")
            self.votes.set(ctx, (*key, signer), PASS if msg.valid else FAIL)
            if self.honeypots.has(ctx, key):
                if msg.valid:
                    self._misjudge(ctx, signer, "honeypot")
                if all(self.votes.has(ctx, (*key, v)) for v in segment.validators):
                    self._close_segment(ctx, key, segment, SegmentStatus.INVALID)
            elif not msg.valid:
                self._open_dispute(ctx, key, segment)
                self._decide(ctx, key)
            elif all(self.votes.has(ctx, (*key, v)) for v in segment.validators):
                self._close_segment(ctx, key, segment, SegmentStatus.PASSED)
        elif segment.status == SegmentStatus.DISPUTED:
            if signer == msg.participant:
                raise ChainError(Code.UNAUTHORIZED, "the participant's own weight already counts for its segment")
            if self.race.weight(ctx, signer) <= 0:
                raise ChainError(Code.UNAUTHORIZED, "only holders of Race weight re-verify")
            self.votes.set(ctx, (*key, signer), PASS if msg.valid else FAIL)
            self._decide(ctx, key)
        else:
            raise ChainError(Code.OUT_OF_RANGE, f"the segment is {segment.status.value}, not being judged")
        ctx.emit("training_verdict", job=str(msg.job_id), round=str(msg.round), valid=str(msg.valid).lower())

    def handle_cancel_job(self, ctx: TxContext, msg: MsgCancelJob) -> None:
        """training/CancelJob: the creator stops the job; the unfinished round earns nothing."""
        job = self.job(ctx, msg.job_id)
        if ctx.tx.signer != job.creator:
            raise ChainError(Code.UNAUTHORIZED, "only the job's creator cancels it")
        if job.status not in LIVE:
            raise ChainError(Code.ALREADY_DONE, f"job {job.id} is already {job.status.value}")
        if job.status == JobStatus.RUNNING:
            self.round_ends.remove(ctx, (job.round_deadline, job.id))
            self.rosters.clear(ctx, (job.id, job.round))
        self._finish(ctx, dataclasses.replace(job, cancelled=True))

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """training/UpdateParams: governance replaces the params (deadlines already set keep their heights)."""
        require_authority(ctx, "change training params")
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    # --- rounds -----------------------------------------------------------------------------------

    def _start_round(self, ctx: Context, job: Job, round_: int) -> None:
        """Rank the round's members by address and set its deadline."""
        members = self._active(ctx, job.id, round_)
        for rank, address in enumerate(members):
            self.rosters.set(ctx, (job.id, round_, address), Slot(rank))
        deadline = ctx.block.height + self.params.get(ctx).round_blocks
        started = dataclasses.replace(
            job, status=JobStatus.RUNNING, round=round_, round_start=ctx.block.height, round_deadline=deadline
        )
        self.jobs.set(ctx, job.id, started)
        self.round_ends.add(ctx, (deadline, job.id))
        ranks = ",".join(encode_address(a) for a in members)
        ctx.emit("training_round", job=str(job.id), round=str(round_), ranks=ranks, deadline=str(deadline))

    def _close_round(self, ctx: Context, job: Job) -> None:
        """Drop the members that did not report, pay the round's share to those that did (held), schedule its
        audit draw, and start the next round or finish the job."""
        self.round_ends.remove(ctx, (job.round_deadline, job.id))
        active = set(self._active(ctx, job.id, job.round))
        reporters = []
        for (_, _, address), slot in self.rosters.items(ctx, (job.id, job.round)):
            if address not in active:
                continue
            if slot.commitment:
                reporters.append(address)
            else:
                self._set_member_status(ctx, job.id, address, MemberStatus.DROPPED)
                ctx.emit("training_dropped", job=str(job.id), round=str(job.round), participant=encode_address(address))
        budget_left = job.budget_left
        if reporters:
            share = int(budget_left) // (job.rounds - job.round + 1)
            each = share // len(reporters)
            for address in reporters:
                self.held.set(ctx, (job.id, address), self.held.get(ctx, (job.id, address)) + each)
            budget_left = budget_left - each * len(reporters)
            self.draws.set(ctx, (job.id, job.round), self.beacon.round_after(ctx, ctx.block.height))
        else:
            self.rosters.clear(ctx, (job.id, job.round))
        ctx.emit("training_round_closed", job=str(job.id), round=str(job.round), paid=str(len(reporters)))
        job = dataclasses.replace(job, budget_left=budget_left)
        if job.round < job.rounds and self._active(ctx, job.id, job.round + 1):
            self._start_round(ctx, job, job.round + 1)
        else:
            self._finish(ctx, job)

    def _finish(self, ctx: Context, job: Job) -> None:
        """No round starts any more: the job settles once its audits are decided."""
        self.jobs.set(ctx, job.id, dataclasses.replace(job, status=JobStatus.SETTLING))
        self.starts.remove(ctx, (job.start_height, job.id))
        self.settling.add(ctx, job.id)

    def start_jobs(self, ctx: Context) -> None:
        """Start the first round of each job whose join window ends here; a job nobody joined ends (refunded)."""
        for _, job_id in self.starts.keys(ctx, (ctx.block.height,)):
            with isolated(ctx, NAME, f"start of job {job_id}") as item:
                job = self.job(item, job_id)
                self.starts.remove(item, (job.start_height, job_id))
                if job.status != JobStatus.WAITING:
                    continue
                if self._active(item, job_id, 1):
                    self._start_round(item, job, 1)
                else:
                    self._finish(item, job)

    def close_rounds(self, ctx: Context) -> None:
        """Close the rounds whose deadline is this block."""
        for _, job_id in self.round_ends.keys(ctx, (ctx.block.height,)):
            with isolated(ctx, NAME, f"round deadline of job {job_id}") as item:
                job = self.job(item, job_id)
                if job.status == JobStatus.RUNNING and job.round_deadline == item.block.height:
                    self._close_round(item, job)
                else:
                    self.round_ends.remove(item, (item.block.height, job_id))

    # --- proof-of-learning ------------------------------------------------------------------------

    def resolve_draws(self, ctx: Context) -> None:
        """Decide the audit of every closed round whose beacon round is now recorded."""
        for (job_id, round_), beacon_round in self.draws.items(ctx):
            output = self.beacon.output(ctx, beacon_round)
            if output:
                with isolated(ctx, NAME, f"audit of job {job_id} round {round_}") as item:
                    self._resolve_draw(item, job_id, round_, audit_seed(output, job_id, round_))

    def _resolve_draw(self, ctx: Context, job_id: int, round_: int, seed: bytes) -> None:
        """An audited round: each reporter must open the segment at the drawn step; maybe a honeypot too."""
        self.draws.remove(ctx, (job_id, round_))
        traces = {
            address: slot.commitment
            for (_, _, address), slot in self.rosters.items(ctx, (job_id, round_))
            if slot.commitment and self._status(ctx, job_id, address) != MemberStatus.CAUGHT
        }
        self.rosters.clear(ctx, (job_id, round_))
        params = self.params.get(ctx)
        if not traces or draw(seed, b"audit", 0, PPM) >= params.audit_ppm:
            return
        job = self.job(ctx, job_id)
        step = draw(seed, b"step", 0, job.inner_steps // job.segment_steps) * job.segment_steps
        deadline = ctx.block.height + params.commit_blocks
        for address in traces:
            trace = traces[address]
            segment = Segment(step=step, status=SegmentStatus.AWAITING, deadline=deadline, seed=seed, trace=trace)
            self.segments.set(ctx, (job_id, round_, address), segment)
        self.segment_ends.add(ctx, (deadline, job_id, round_))
        ctx.emit("training_audit", job=str(job_id), round=str(round_), step=str(step))
        if draw(seed, b"honeypot", 0, PPM) < params.honeypot_ppm:
            self._plant_honeypot(ctx, job_id, round_, seed, step)

    def _plant_honeypot(self, ctx: Context, job_id: int, round_: int, seed: bytes, step: int) -> None:
        """A committed segment nobody trained (its hashes come from the seed) under a fresh address: every
        validator drawn for it must reject it."""
        participant = honeypot_hash(seed, b"participant")[:20]
        validators = self._draw_validators(ctx, job_id, seed, participant)
        if not validators:
            return
        deadline = ctx.block.height + self.params.get(ctx).verdict_blocks
        segment = Segment(
            step=step,
            status=SegmentStatus.COMMITTED,
            deadline=deadline,
            seed=seed,
            trace=honeypot_hash(seed, b"trace"),
            prev_weights_hash=honeypot_hash(seed, b"prev weights"),
            weights_hash=honeypot_hash(seed, b"weights"),
            optimizer_hash=honeypot_hash(seed, b"optimizer"),
            data_indices_hash=honeypot_hash(seed, b"data indices"),
            validators=tuple(Address(v) for v in validators),
        )
        self.segments.set(ctx, (job_id, round_, participant), segment)
        self.honeypots.add(ctx, (job_id, round_, participant))
        self.segment_ends.add(ctx, (deadline, job_id, round_))

    def _status(self, ctx: Context, job_id: int, address: bytes) -> MemberStatus | None:
        member = self.members.get(ctx, (job_id, address))
        return None if member is None else member.status

    def _draw_validators(self, ctx: Context, job_id: int, seed: bytes, participant: bytes) -> list[bytes]:
        """Validators for a segment: drawn by Race weight among accounts that never joined the job."""
        members = {address for _, address in self.members.keys(ctx, (job_id,))}
        count = self.params.get(ctx).validators_per_segment
        return weighted_draw(seed, b"validators" + participant, self.race.all_weights(ctx), count, members)

    def _open_dispute(self, ctx: Context, key: SegmentKey, segment: Segment) -> None:
        deadline = ctx.block.height + self.params.get(ctx).dispute_blocks
        self.segments.set(ctx, key, dataclasses.replace(segment, status=SegmentStatus.DISPUTED, deadline=deadline))
        self.segment_ends.add(ctx, (deadline, key[0], key[1]))
        ctx.emit("training_dispute", job=str(key[0]), round=str(key[1]), participant=encode_address(key[2]))

    def _decide(self, ctx: Context, key: SegmentKey) -> None:
        """Close a re-verification once more than half of the total weight holds one verdict."""
        total = sum(int(w) for _, w in self.race.all_weights(ctx))
        valid, invalid = int(self.race.weight(ctx, key[2])), 0
        for (*_, voter), verdict in self.votes.items(ctx, key):
            if verdict == PASS:
                valid += int(self.race.weight(ctx, voter))
            else:
                invalid += int(self.race.weight(ctx, voter))
        segment = self.segments.get(ctx, key)
        if segment is None:
            return
        if 2 * invalid > total:
            self._close_segment(ctx, key, segment, SegmentStatus.INVALID)
        elif 2 * valid > total:
            self._close_segment(ctx, key, segment, SegmentStatus.VALID)

    def _close_segment(
        self, ctx: Context, key: SegmentKey, segment: Segment, status: SegmentStatus, *, decided: bool = True
    ) -> None:
        """Record the outcome; re-verifiers on the losing side of a majority (`decided`) are misjudged; an invalid
        or missed segment forfeits the participant's rewards of the job. A re-verification left undecided at its
        deadline misjudges nobody: its votes lost to no majority, and the voters that would have made one may only
        have been slow, or gone (a dead or caught member votes no more)."""
        self.segments.set(ctx, key, dataclasses.replace(segment, status=status))
        ctx.emit("training_segment_closed", job=str(key[0]), round=str(key[1]), status=status.value)
        if self.honeypots.has(ctx, key):
            return
        if segment.status == SegmentStatus.DISPUTED and decided:
            for (*_, voter), verdict in self.votes.items(ctx, key):
                if (verdict == PASS) != (status == SegmentStatus.VALID):
                    self._misjudge(ctx, voter, "re-verification")
        if status in (SegmentStatus.INVALID, SegmentStatus.MISSED):
            self._forfeit(ctx, key[0], key[2])

    def _forfeit(self, ctx: Context, job_id: int, participant: bytes) -> None:
        """A caught participant: its held rewards go back to the payer and it takes part in no further round."""
        job = self.job(ctx, job_id)
        amount = int(self.held.get(ctx, (job_id, participant)))
        if amount:
            self.bank.release(ctx, NAME, self.escrows.id(job_id), self.payer(job), amount)
            self.held.set(ctx, (job_id, participant), 0)
        self._set_member_status(ctx, job_id, participant, MemberStatus.CAUGHT)
        ctx.emit("training_caught", job=str(job_id), participant=encode_address(participant), forfeited=str(amount))

    def _misjudge(self, ctx: Context, node: bytes, what: str) -> None:
        """Count a wrong proof-of-learning verdict; verification's settlement takes the node's cycle reward for it."""
        self.misjudged.set(ctx, node, self.misjudged.get(ctx, node) + 1)
        ctx.emit("training_misjudged", node=encode_address(node), what=what)
        if self.penalties is not None:
            self.penalties.misjudge_now(ctx, node, f"training {what}")

    def close_segments(self, ctx: Context) -> None:
        """Segments whose window ends here: never committed → missed (forfeit); judged by nobody against it →
        passed (a honeypot: closed); an undecided re-verification → valid, misjudging nobody."""
        height = ctx.block.height
        for _, job_id, round_ in self.segment_ends.keys(ctx, (height,)):
            self.segment_ends.remove(ctx, (height, job_id, round_))
            for key, segment in self.segments.items(ctx, (job_id, round_)):
                if segment.deadline != height or segment.status not in OPEN_SEGMENT:
                    continue
                with isolated(ctx, NAME, f"segment of job {job_id} round {round_}") as item:
                    outcome = {
                        SegmentStatus.AWAITING: SegmentStatus.MISSED,
                        SegmentStatus.COMMITTED: SegmentStatus.PASSED,
                        SegmentStatus.DISPUTED: SegmentStatus.VALID,
                    }[segment.status]
                    if self.honeypots.has(item, key):
                        outcome = SegmentStatus.INVALID
                    self._close_segment(item, key, segment, outcome, decided=False)

    # --- settlement -------------------------------------------------------------------------------

    def settle_jobs(self, ctx: Context) -> None:
        """Pay out each finished job whose audits are all decided, and refund what is left of its budget."""
        for job_id in self.settling.keys(ctx):
            with isolated(ctx, NAME, f"settlement of job {job_id}") as item:
                self._settle(item, job_id)

    def _settle(self, ctx: Context, job_id: int) -> None:
        if self.draws.keys(ctx, (job_id,)):
            return
        if any(s.status in OPEN_SEGMENT for _, s in self.segments.items(ctx, (job_id,))):
            return
        job = self.job(ctx, job_id)
        escrow_id = self.escrows.id(job_id)
        paid = 0
        for (_, address), amount in self.held.items(ctx, (job_id,)):
            self.bank.release(ctx, NAME, escrow_id, address, amount)
            paid += int(amount)
        if job.budget_left:
            self.bank.release(ctx, NAME, escrow_id, self.payer(job), job.budget_left)
        for collection in (self.held, self.rosters, self.segments, self.honeypots, self.votes):
            collection.clear(ctx, (job_id,))
        status = JobStatus.CANCELLED if job.cancelled else JobStatus.FINISHED
        self.jobs.set(ctx, job_id, dataclasses.replace(job, status=status, budget_left=Amount(0)))
        self.settling.remove(ctx, job_id)
        ctx.emit("training_settled", job=str(job_id), paid=str(paid), refunded=str(job.budget_left))

    def check_escrows(self, ctx: Context) -> None:
        """Each unfinished job's escrow holds exactly its budget left plus the rewards held for it; no other."""
        expected: dict[bytes, int] = {}
        for job_id, job in self.jobs.items(ctx):
            if job.status in (JobStatus.FINISHED, JobStatus.CANCELLED):
                continue
            held = sum(int(a) for _, a in self.held.items(ctx, (job_id,)))
            expected[self.escrows.id(job_id)] = int(job.budget_left) + held
        actual = dict(self.bank.module_escrows(ctx, NAME))
        for escrow_id in expected.keys() | actual.keys():
            if expected.get(escrow_id, 0) != actual.get(escrow_id, 0):
                raise InvariantBroken(
                    f"training escrow {escrow_id.hex()} holds {actual.get(escrow_id, 0)}, "
                    f"jobs account for {expected.get(escrow_id, 0)}"
                )

    # --- queries ----------------------------------------------------------------------------------

    def query_params(self, ctx: Context, _: None) -> Params:
        """The training parameters."""
        return self.params.get(ctx)

    def query_job(self, ctx: Context, text: str) -> Job | None:
        """A job by id."""
        return self.jobs.get(ctx, _job_id(text))

    def query_jobs(self, ctx: Context, _: None) -> Jobs:
        """Every job."""
        return Jobs(tuple(job for _, job in self.jobs.items(ctx)))

    def query_participants(self, ctx: Context, text: str) -> Participants:
        """A job's participants with their ranks in the current round (what a daemon's rendezvous reads)."""
        job = self.job(ctx, _job_id(text))
        found = []
        for (_, address), member in self.members.items(ctx, (job.id,)):
            slot = self.rosters.get(ctx, (job.id, job.round, address))
            found.append(
                Participant(
                    address=Address(address),
                    endpoint=member.endpoint,
                    status=member.status,
                    from_round=member.from_round,
                    joined_height=member.joined_height,
                    reported_through=member.reported_through,
                    in_round=slot is not None,
                    rank=0 if slot is None else slot.rank,
                    reported=slot is not None and bool(slot.commitment),
                    held=self.held.get(ctx, (job.id, address)),
                )
            )
        return Participants(job.id, job.round, tuple(found))

    def query_segments(self, ctx: Context, text: str) -> Segments:
        """A job's proof-of-learning records (what validators look through for their draws)."""
        job_id = _job_id(text)
        found = tuple(SegmentInfo(r, Address(p), s) for (_, r, p), s in self.segments.items(ctx, (job_id,)))
        return Segments(job_id, found)

    def query_misjudged(self, ctx: Context, address: bytes) -> Misjudged:
        """A validator's count of wrong proof-of-learning verdicts."""
        return Misjudged(Address(address), int(self.misjudged.get(ctx, address)))


class TrainingModule(Module[Keeper, TrainingGenesis]):
    """Module wiring: job, round, proof-of-learning and cancel messages, the round and audit hooks, queries and
    the escrow invariant."""

    name = NAME
    genesis_type = TrainingGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgCreateJob: Keeper.handle_create_job,
        MsgJoin: Keeper.handle_join,
        MsgRoundDone: Keeper.handle_round_done,
        MsgCommitSegment: Keeper.handle_commit_segment,
        MsgPolVerdict: Keeper.handle_pol_verdict,
        MsgCancelJob: Keeper.handle_cancel_job,
        MsgUpdateParams: Keeper.handle_update_params,
        MsgCreateGrantJob: Keeper.handle_create_grant_job,
    }
    queries: ClassVar[QueryTable] = {
        PARAMS: Keeper.query_params,
        JOB: Keeper.query_job,
        JOBS: Keeper.query_jobs,
        PARTICIPANTS: Keeper.query_participants,
        SEGMENTS: Keeper.query_segments,
        MISJUDGED: Keeper.query_misjudged,
    }

    def init_genesis(self, ctx: Context, state: TrainingGenesis) -> None:
        """Params and the next job id."""
        self.keeper.params.set(ctx, state.params)
        self.keeper.next_id.set(ctx, state.next_job_id)

    def export_genesis(self, ctx: Context) -> TrainingGenesis:
        """Params and the next job id (jobs in flight are not exported)."""
        k = self.keeper
        return TrainingGenesis(params=k.params.get(ctx), next_job_id=max(int(k.next_id.get(ctx)), 1))

    def end_block(self, ctx: Context) -> None:
        """Start waiting jobs, close rounds at their deadline, draw audits, close segment windows, settle jobs."""
        self.keeper.start_jobs(ctx)
        self.keeper.close_rounds(ctx)
        self.keeper.resolve_draws(ctx)
        self.keeper.close_segments(ctx)
        self.keeper.settle_jobs(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """escrow: every unfinished job's escrow equals its budget left plus its held rewards."""
        return {"escrow": self.keeper.check_escrows}
