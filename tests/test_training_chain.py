"""The training module (issue 14): DiLoCo jobs with on-chain rounds, proof-of-learning audits, re-verification,
honeypots, payment and refunds. Every block checks every invariant (bank's supply, training's escrows).

Race weights: participants P1-P4 10 each, validators V1-V3 20 each (total 100); a developer and a stranger hold
none. Nobody mines, so every tally keeps the weights.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.authority import GOV_AUTHORITY
from racenet.chain.errors import ChainError, Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.modules.tokenomics.types import TRAINING_FUND
from racenet.chain.modules.training import (
    JOB,
    JOBS,
    PPM,
    SEGMENTS,
    Job,
    JobStatus,
    Keeper,
    MemberStatus,
    MsgCancelJob,
    MsgCommitSegment,
    MsgCreateJob,
    MsgJoin,
    MsgPolVerdict,
    MsgRoundDone,
    Params,
    Participants,
    Segment,
    SegmentStatus,
    TrainingGenesis,
)
from racenet.chain.modules.training import PARTICIPANTS as PARTICIPANTS_QUERY
from racenet.chain.query import QuerySpec
from racenet.chain.scalars import Amount
from racenet.chain.types import Event
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, Chain, balances, key

P1, P2, P3, P4 = PARTICIPANTS = [key(1), key(2), key(3), key(4)]
V1, V2, V3 = VALIDATORS = [key(5), key(6), key(7)]
WEIGHTS = {**dict.fromkeys(PARTICIPANTS, 10), **dict.fromkeys(VALIDATORS, 20)}
DEV, STRANGER = key(50), key(51)
BUDGET = 1_000_000
A = TypeVar("A")
R = TypeVar("R")
H = bytes(range(32))
BASE = Params(
    start_blocks=2,
    round_blocks=4,
    commit_blocks=3,
    verdict_blocks=3,
    dispute_blocks=4,
    audit_ppm=0,
    honeypot_ppm=0,
    validators_per_segment=2,
)


def genesis(params: Params) -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(WEIGHTS.values())],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*WEIGHTS, DEV, STRANGER])),
            race=RaceGenesis(
                nodes=tuple(
                    RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
                    for i, (k, w) in enumerate(WEIGHTS.items())
                )
            ),
            training=TrainingGenesis(params=params),
        ),
    )


def create_msg(rounds: int = 3, max_participants: int = 4, budget: int = BUDGET) -> MsgCreateJob:
    return MsgCreateJob(
        architecture="gpt-tiny",
        weights_hash=H,
        dataset_hash=bytes(32),
        dataset_location="debian:bible-kjv",
        inner_lr_ppm=3_000,
        inner_steps=40,
        segment_steps=4,
        outer_lr_ppm=700_000,
        outer_momentum_ppm=500_000,
        rounds=rounds,
        max_participants=max_participants,
        budget=budget,
    )


def commit_msg(job_id: int, round_: int, step: int, weights: bytes = H) -> MsgCommitSegment:
    return MsgCommitSegment(
        job_id=job_id,
        round=round_,
        step=step,
        prev_weights_hash=bytes(32),
        weights_hash=weights,
        optimizer_hash=H,
        data_indices_hash=H,
    )


@dataclasses.dataclass
class TrainingChain(Chain):
    events: list[Event] = dataclasses.field(default_factory=list)

    def send(self, *msgs: tuple[PrivateKey, Msg]) -> list[int]:
        """Each (signer, message) as a transaction, all in one decided block; their result codes."""
        result = self.decided_block(*(self.tx(k, m) for k, m in msgs))
        self.events += [*result.events, *(e for r in result.tx_results for e in r.events)]
        assert not [e for e in result.events if e.type == "hook_failed"]
        assert all(r.code != Code.INTERNAL for r in result.tx_results)
        return [r.code for r in result.tx_results]

    def step(self) -> None:
        """One empty block."""
        self.send()

    def until(self, done: Callable[[], bool], limit: int = 60) -> None:
        """Run empty blocks until `done()` holds."""
        for _ in range(limit):
            if done():
                return
            self.step()
        raise AssertionError("the condition never held")

    def create(self, **kwargs: int) -> int:
        assert self.send((DEV, create_msg(**kwargs))) == [0]
        return int(self.app.training.keeper.next_id.get(self.app.read_context())) - 1

    def job(self, job_id: int) -> Job:
        job = self.app.training.keeper.jobs.get(self.app.read_context(), job_id)
        assert job is not None
        return job

    def participants(self, job_id: int) -> Participants:
        return self.app.training.keeper.query_participants(self.app.read_context(), str(job_id))

    def held(self, job_id: int, k: PrivateKey) -> int:
        return int(self.app.training.keeper.held.get(self.app.read_context(), (job_id, k.public_key.address)))

    def segment(self, job_id: int, round_: int, address: bytes) -> Segment | None:
        return self.app.training.keeper.segments.get(self.app.read_context(), (job_id, round_, address))

    def found(self, job_id: int, round_: int, k: PrivateKey) -> Segment:
        """A segment that must exist."""
        segment = self.segment(job_id, round_, k.public_key.address)
        assert segment is not None
        return segment

    def status(self, job_id: int, round_: int, k: PrivateKey | bytes) -> SegmentStatus | None:
        """A segment's status (None once cleared or never drawn)."""
        segment = self.segment(job_id, round_, k if isinstance(k, bytes) else k.public_key.address)
        return None if segment is None else segment.status

    def report(self, job_id: int, *keys: PrivateKey) -> list[int]:
        round_ = self.job(job_id).round
        return self.send(*((k, MsgRoundDone(job_id, round_, H)) for k in keys))

    def fees(self, k: PrivateKey) -> int:
        return self.sequences.get(k.public_key.address, 0) * FEE

    def emitted(self, type_: str) -> list[dict[str, str]]:
        return [dict(e.attributes) for e in self.events if e.type == type_]


def start(tmp_path: Path, params: Params = BASE) -> TrainingChain:
    c = Chain.start(tmp_path, genesis(params))
    chain = TrainingChain(c.app, c.driver)
    chain.until_beacon()
    return chain


def running(chain: TrainingChain, job_id: int) -> None:
    chain.until(lambda: chain.job(job_id).status == JobStatus.RUNNING)


def settled(chain: TrainingChain, job_id: int) -> None:
    chain.until(lambda: chain.job(job_id).status in (JobStatus.FINISHED, JobStatus.CANCELLED))


def ask(chain: TrainingChain, spec: QuerySpec[A, R], arg: A) -> R:
    """A query through the App, as a client sends it."""
    answer = chain.app.query(spec.path, spec.arg.encode(arg))
    assert answer.code == 0, answer.log
    return spec.decode(json.loads(answer.value))


def addresses(*keys: PrivateKey) -> list[bytes]:
    return [k.public_key.address for k in keys]


def test_three_participants_run_the_rounds_a_silent_one_is_dropped_and_a_late_joiner_enters_at_the_boundary(
    tmp_path: Path,
) -> None:
    chain = start(tmp_path)
    dev_before = chain.balance(DEV)
    job_id = chain.create(rounds=3)
    assert chain.send((P3, MsgJoin(job_id, "10.0.0.3:29500")), (P1, MsgJoin(job_id, "10.0.0.1:29500"))) == [0, 0]
    assert chain.send((P2, MsgJoin(job_id, "[::1]:29500"))) == [0]
    running(chain, job_id)
    view = chain.participants(job_id)
    assert view.round == 1 and [p.rank for p in view.participants] == [0, 1, 2]
    assert [p.address for p in view.participants] == sorted(addresses(P1, P2, P3))

    # A late joiner, joining mid-round, takes part from the next boundary.
    assert chain.send((P4, MsgJoin(job_id, "10.0.0.4:29500"))) == [0]
    late = {p.address: p for p in chain.participants(job_id).participants}[P4.public_key.address]
    assert late.from_round == 2 and not late.in_round
    assert chain.report(job_id, P1, P2) == [0, 0]
    assert chain.job(job_id).round == 1
    assert chain.report(job_id, P3) == [0]  # the last report closes the round: round 2 starts at once
    job = chain.job(job_id)
    assert job.round == 2 and job.status == JobStatus.RUNNING
    view = chain.participants(job_id)
    in_round = sorted(p.address for p in view.participants if p.in_round)
    assert in_round == sorted(addresses(P1, P2, P3, P4))
    assert [p.rank for p in sorted(view.participants, key=lambda p: p.address)] == [0, 1, 2, 3]
    first = BUDGET // 3 // 3
    assert [chain.held(job_id, k) for k in (P1, P2, P3, P4)] == [first, first, first, 0]

    # Round 2: P3 stops reporting and is dropped at the deadline; the others go on.
    assert chain.report(job_id, P1, P2, P4) == [0, 0, 0]
    chain.until(lambda: chain.job(job_id).round == 3)
    statuses = {p.address: p.status for p in chain.participants(job_id).participants}
    assert statuses[P3.public_key.address] == MemberStatus.DROPPED
    assert [e["participant"] for e in chain.emitted("training_dropped")] == [encode_address(P3.public_key.address)]
    assert chain.report(job_id, P3) == [Code.UNAUTHORIZED]
    assert chain.send((V1, MsgJoin(job_id, "10.0.0.5:1"))) == [Code.OUT_OF_RANGE]  # no round left to join
    assert chain.report(job_id, P1, P2, P4) == [0, 0, 0]
    assert chain.job(job_id).status == JobStatus.SETTLING

    # Each round's averaging group reads off the query: the members with from_round <= round <= reported_through.
    final = chain.participants(job_id).participants
    groups = {r: sorted(p.address for p in final if p.from_round <= r <= p.reported_through) for r in (1, 2, 3)}
    assert groups == {1: sorted(addresses(P1, P2, P3)), 2: sorted(addresses(P1, P2, P4)), 3: groups[2]}
    held = {k: chain.held(job_id, k) for k in PARTICIPANTS}
    assert held[P3] == first and held[P1] == held[P2] > held[P4] > 0
    left = int(chain.job(job_id).budget_left)
    assert sum(held.values()) + left == BUDGET
    settled(chain, job_id)
    assert chain.job(job_id).status == JobStatus.FINISHED
    assert chain.balance(DEV) == dev_before - BUDGET + left - chain.fees(DEV)
    paid = chain.emitted("training_settled")
    assert paid == [{"job": str(job_id), "paid": str(BUDGET - left), "refunded": str(left)}]
    assert chain.app.bank.keeper.module_escrows(chain.app.read_context(), "training") == []
    answered = ask(chain, JOB, str(job_id))
    assert answered is not None and answered.status == JobStatus.FINISHED and ask(chain, JOBS, None).jobs == (answered,)
    assert len(ask(chain, PARTICIPANTS_QUERY, str(job_id)).participants) == 4
    assert ask(chain, SEGMENTS, str(job_id)).segments == ()
    assert chain.app.query(JOB.path, b"x").code == Code.INVALID_QUERY


def test_only_race_weight_holders_join_and_a_full_job_refuses_more(tmp_path: Path) -> None:
    chain = start(tmp_path)
    job_id = chain.create(max_participants=2)
    codes = chain.send(
        (STRANGER, MsgJoin(job_id, "10.0.0.9:1")),
        (P1, MsgJoin(job_id, "10.0.0.1:1")),
        (P1, MsgJoin(job_id, "10.0.0.1:2")),
        (P2, MsgJoin(job_id, "10.0.0.2:1")),
        (P3, MsgJoin(job_id, "10.0.0.3:1")),
        (P4, MsgJoin(job_id + 1, "10.0.0.4:1")),
    )
    assert codes == [Code.UNAUTHORIZED, 0, Code.ALREADY_DONE, 0, Code.OUT_OF_RANGE, Code.NOT_FOUND]


def test_a_job_nobody_joined_ends_at_its_start_and_refunds(tmp_path: Path) -> None:
    chain = start(tmp_path)
    dev_before = chain.balance(DEV)
    job_id = chain.create()
    settled(chain, job_id)
    assert chain.job(job_id).status == JobStatus.FINISHED and chain.job(job_id).round == 0
    assert chain.balance(DEV) == dev_before - chain.fees(DEV)
    assert chain.send((P1, MsgJoin(job_id, "10.0.0.1:1"))) == [Code.OUT_OF_RANGE]


def test_a_cancelled_job_refunds_its_creator_and_pays_only_closed_rounds(tmp_path: Path) -> None:
    chain = start(tmp_path)
    dev_before = chain.balance(DEV)
    job_id = chain.create(rounds=4)
    assert chain.send((P1, MsgJoin(job_id, "10.0.0.1:1")), (P2, MsgJoin(job_id, "10.0.0.2:1"))) == [0, 0]
    running(chain, job_id)
    assert chain.report(job_id, P1, P2) == [0, 0]
    assert chain.report(job_id, P1) == [0]
    assert chain.send((P1, MsgCancelJob(job_id))) == [Code.UNAUTHORIZED]
    assert chain.send((DEV, MsgCancelJob(job_id))) == [0]
    assert chain.send((DEV, MsgCancelJob(job_id))) == [Code.ALREADY_DONE]
    settled(chain, job_id)
    job = chain.job(job_id)
    assert job.status == JobStatus.CANCELLED and job.budget_left == 0
    earned = BUDGET // 4 // 2 * 2
    assert chain.balance(DEV) == dev_before - earned - chain.fees(DEV)


def audited(chain: TrainingChain, job_id: int, round_: int, *keys: PrivateKey) -> list[Segment]:
    """Run until the round's audit is drawn; the awaited segments of `keys`."""
    chain.until(lambda: chain.segment(job_id, round_, keys[0].public_key.address) is not None)
    found = [chain.segment(job_id, round_, k.public_key.address) for k in keys]
    assert all(s is not None and s.status == SegmentStatus.AWAITING for s in found)
    return [s for s in found if s is not None]


def validator_keys(segment: Segment) -> list[PrivateKey]:
    by_address = {k.public_key.address: k for k in WEIGHTS}
    return [by_address[v] for v in segment.validators]


def test_a_faked_segment_is_found_invalid_by_majority_and_forfeits_the_job_rewards(tmp_path: Path) -> None:
    chain = start(tmp_path, dataclasses.replace(BASE, audit_ppm=PPM, round_blocks=30))
    dev_before = chain.balance(DEV)
    job_id = chain.create(rounds=2)
    assert chain.send((P1, MsgJoin(job_id, "10.0.0.1:1")), (P2, MsgJoin(job_id, "10.0.0.2:1"))) == [0, 0]
    running(chain, job_id)
    assert chain.report(job_id, P1, P2) == [0, 0]
    honest, faked = audited(chain, job_id, 1, P1, P2)
    assert honest.step == faked.step and honest.step % 4 == 0 and honest.step < 40
    wrong_step = commit_msg(job_id, 1, honest.step + 1)
    assert chain.send((P1, wrong_step)) == [Code.INVALID_MESSAGE]
    codes = chain.send((P1, commit_msg(job_id, 1, honest.step)), (P2, commit_msg(job_id, 1, faked.step, b"f" * 32)))
    assert codes == [0, 0]
    honest, faked = chain.found(job_id, 1, P1), chain.found(job_id, 1, P2)
    assert honest.trace == H and honest.weights_hash == H and faked.weights_hash == b"f" * 32
    assert len(honest.validators) == 2 and not set(honest.validators) & set(addresses(*PARTICIPANTS))
    assert chain.send((P1, MsgPolVerdict(job_id, 1, P2.public_key.address, True))) == [Code.UNAUTHORIZED]
    passes = [(v, MsgPolVerdict(job_id, 1, P1.public_key.address, True)) for v in validator_keys(honest)]
    assert chain.send(*passes) == [0, 0]
    assert chain.status(job_id, 1, P1) == SegmentStatus.PASSED

    checker, *_ = validator_keys(faked)
    assert chain.send((checker, MsgPolVerdict(job_id, 1, P2.public_key.address, False))) == [0]
    assert chain.status(job_id, 1, P2) == SegmentStatus.DISPUTED
    earned = chain.held(job_id, P2)
    assert earned > 0
    assert chain.send((P2, MsgPolVerdict(job_id, 1, P2.public_key.address, True))) == [Code.UNAUTHORIZED]
    for voter in [k for k in (V1, V2, V3, P3, P4) if k is not checker]:  # until more than half agrees
        if chain.status(job_id, 1, P2) == SegmentStatus.DISPUTED:
            assert chain.send((voter, MsgPolVerdict(job_id, 1, P2.public_key.address, False))) == [0]
    assert chain.status(job_id, 1, P2) == SegmentStatus.INVALID
    assert chain.held(job_id, P2) == 0
    statuses = {p.address: p.status for p in chain.participants(job_id).participants}
    assert statuses[P2.public_key.address] == MemberStatus.CAUGHT
    assert chain.report(job_id, P2) == [Code.UNAUTHORIZED]

    assert chain.report(job_id, P1) == [0]  # the caught participant no longer holds the barrier
    (last,) = audited(chain, job_id, 2, P1)
    listed = ask(chain, SEGMENTS, str(job_id)).segments
    assert [(s.round, s.participant, s.segment.status) for s in listed][-1] == (2, P1.public_key.address, "awaiting")
    assert chain.send((P1, commit_msg(job_id, 2, last.step))) == [0]
    settled(chain, job_id)
    refund = chain.emitted("training_settled")[0]
    assert int(refund["paid"]) == BUDGET - earned - int(refund["refunded"])
    assert chain.balance(DEV) == dev_before - BUDGET + earned + int(refund["refunded"]) - chain.fees(DEV)


def test_a_segment_never_committed_forfeits(tmp_path: Path) -> None:
    chain = start(tmp_path, dataclasses.replace(BASE, audit_ppm=PPM))
    job_id = chain.create(rounds=1)
    assert chain.send((P1, MsgJoin(job_id, "10.0.0.1:1"))) == [0]
    running(chain, job_id)
    assert chain.report(job_id, P1) == [0]
    audited(chain, job_id, 1, P1)
    settled(chain, job_id)
    assert chain.segment(job_id, 1, P1.public_key.address) is None  # cleared at settlement
    assert [e["forfeited"] for e in chain.emitted("training_caught")] == [str(BUDGET)]


def test_a_validator_that_passes_a_honeypot_is_misjudged_and_loses_its_cycle_reward(tmp_path: Path) -> None:
    chain = start(tmp_path, dataclasses.replace(BASE, audit_ppm=PPM, honeypot_ppm=PPM))
    job_id = chain.create(rounds=1)
    assert chain.send((P1, MsgJoin(job_id, "10.0.0.1:1"))) == [0]
    running(chain, job_id)
    assert chain.report(job_id, P1) == [0]
    (mine,) = audited(chain, job_id, 1, P1)
    ctx = chain.app.read_context()
    (pot,) = [key_ for key_ in chain.app.training.keeper.honeypots.keys(ctx, (job_id, 1))]
    planted = chain.segment(job_id, 1, pot[2])
    assert planted is not None and planted.status == SegmentStatus.COMMITTED and len(planted.validators) == 2
    lazy, careful = validator_keys(planted)
    codes = chain.send(
        (lazy, MsgPolVerdict(job_id, 1, pot[2], True)),
        (careful, MsgPolVerdict(job_id, 1, pot[2], False)),
        (P1, commit_msg(job_id, 1, mine.step)),
    )
    assert codes == [0, 0, 0]
    misjudged = chain.app.training.keeper.misjudged
    assert misjudged.get(chain.app.read_context(), lazy.public_key.address) == 1
    assert misjudged.get(chain.app.read_context(), careful.public_key.address) == 0
    # The penalty: verification counts it as a misjudgement of the cycle, whose reward share the node then loses.
    (penalty,) = chain.emitted("verification_misjudged")
    assert penalty["node"] == encode_address(lazy.public_key.address) and penalty["what"] == "training honeypot"
    cycle = int(penalty["cycle"])
    assert chain.app.verification.keeper.misjudged.get(chain.app.read_context(), (cycle, lazy.public_key.address))
    assert chain.status(job_id, 1, pot[2]) == SegmentStatus.INVALID
    settled(chain, job_id)
    assert chain.emitted("training_caught") == []
    assert [e["paid"] for e in chain.emitted("training_settled")] == [str(BUDGET)]


def accused(tmp_path: Path) -> tuple[TrainingChain, int, PrivateKey]:
    """A one-round job whose only participant P1 is audited and failed by one of its drawn validators."""
    chain = start(tmp_path, dataclasses.replace(BASE, audit_ppm=PPM))
    job_id = chain.create(rounds=1)
    assert chain.send((P1, MsgJoin(job_id, "10.0.0.1:1"))) == [0]
    running(chain, job_id)
    assert chain.report(job_id, P1) == [0]
    (mine,) = audited(chain, job_id, 1, P1)
    assert chain.send((P1, commit_msg(job_id, 1, mine.step))) == [0]
    checker, *_ = validator_keys(chain.found(job_id, 1, P1))
    assert chain.send((checker, MsgPolVerdict(job_id, 1, P1.public_key.address, False))) == [0]
    return chain, job_id, checker


def test_a_failed_verdict_nobody_upholds_stays_valid_and_misjudges_nobody(tmp_path: Path) -> None:
    chain, job_id, _ = accused(tmp_path)
    settled(chain, job_id)
    assert chain.emitted("training_caught") == []
    assert chain.emitted("training_misjudged") == []  # undecided: the accusation lost to no majority


def test_a_failed_verdict_a_majority_overturns_misjudges_its_accuser(tmp_path: Path) -> None:
    chain, job_id, checker = accused(tmp_path)
    others = [k for k in (V1, V2, V3) if k is not checker]
    for voter in (*others, P2):  # with P1's own weight: 10 + 2 × 20 + 10 of 100
        chain.send((voter, MsgPolVerdict(job_id, 1, P1.public_key.address, True)))
    settled(chain, job_id)
    assert chain.emitted("training_caught") == []
    assert [e["node"] for e in chain.emitted("training_misjudged")] == [encode_address(checker.public_key.address)]


HOSTILE = [0, 1, 2**64 - 1]


def test_hostile_integers_are_rejected_with_a_code_and_never_break_a_hook(tmp_path: Path) -> None:
    chain = start(tmp_path, dataclasses.replace(BASE, audit_ppm=PPM, honeypot_ppm=PPM))
    job_id = chain.create(rounds=2)
    assert chain.send((P1, MsgJoin(job_id, "10.0.0.1:1"))) == [0]
    running(chain, job_id)
    msgs: list[tuple[PrivateKey, Msg]] = []
    for n in HOSTILE:
        msgs += [
            (DEV, create_msg(rounds=max(1, min(n, 10**6)), max_participants=max(1, min(n, 256)), budget=max(n, 1))),
            (P1, MsgJoin(n, "h:1")),
            (P1, MsgRoundDone(job_id, n, H)),
            (P1, MsgRoundDone(n, 1, H)),
            (P1, commit_msg(n, n, n)),
            (V1, MsgPolVerdict(job_id, n, P1.public_key.address, bool(n % 2))),
            (STRANGER, MsgCancelJob(n)),
        ]
    for k, m in msgs:
        try:
            m.validate()
        except ChainError:
            continue
        chain.send((k, m))
    chain.until(lambda: chain.job(job_id).status in (JobStatus.FINISHED, JobStatus.CANCELLED), limit=80)
    for bad in (
        MsgJoin(2**64, "h:1"),
        MsgRoundDone(1, 2**64, H),
        commit_msg(1, 1, 2**64),
        MsgCancelJob(-1),
        MsgJoin(1, "no-port"),
        MsgJoin(1, "h:0"),
        MsgJoin(1, "h:65536"),
        MsgJoin(1, "sp ace:1"),
        dataclasses.replace(create_msg(), budget=2**64),
        dataclasses.replace(create_msg(), segment_steps=41),
        dataclasses.replace(create_msg(), segment_steps=3),
        dataclasses.replace(create_msg(), dataset_location="x" * 257),
        dataclasses.replace(create_msg(), dataset_location="caf\u00e9"),
        dataclasses.replace(create_msg(), architecture="a/b"),
        dataclasses.replace(create_msg(), outer_momentum_ppm=PPM),
    ):
        with pytest.raises(ChainError) as raised:
            bad.validate()
        assert raised.value.code == Code.INVALID_MESSAGE
    for field, value in (("round_blocks", 0), ("dispute_blocks", 2**64), ("audit_ppm", PPM + 1), ("max_rounds", 0)):
        with pytest.raises(ValueError):
            dataclasses.replace(BASE, **{field: value}).validate()


def test_a_job_the_governance_authority_created_refunds_the_training_fund() -> None:
    job = dataclasses.replace(create_job_record(), creator=GOV_AUTHORITY)
    assert Keeper.payer(job) == TRAINING_FUND
    assert Keeper.payer(create_job_record()) == DEV.public_key.address


def create_job_record() -> Job:
    m = create_msg()
    return Job(
        id=1,
        creator=DEV.public_key.address,
        architecture=m.architecture,
        weights_hash=m.weights_hash,
        dataset_hash=m.dataset_hash,
        dataset_location=m.dataset_location,
        inner_lr_ppm=m.inner_lr_ppm,
        inner_steps=m.inner_steps,
        segment_steps=m.segment_steps,
        outer_lr_ppm=m.outer_lr_ppm,
        outer_momentum_ppm=m.outer_momentum_ppm,
        rounds=m.rounds,
        max_participants=m.max_participants,
        budget=Amount(m.budget),
        budget_left=Amount(m.budget),
        status=JobStatus.WAITING,
        created_height=1,
        start_height=3,
    )
