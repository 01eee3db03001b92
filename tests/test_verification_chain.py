"""The verification module: unique-signature duties, checks, majority re-verification, reputation, and the release
of held rewards. The supply and held-reward invariants are checked after every block (tests.chain.Chain).

Weights: executor-to-be nodes 10, 15, 20, 25 (total 70). A coalition of the two lightest (25 of 70) is below half.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.errors import Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.modules.bank import BankGenesis, MsgSend
from racenet.chain.modules.bank.module import FEE_COLLECTOR
from racenet.chain.modules.inference import InferenceGenesis, ModelEntry, MsgFinishRequest, ReceiptStatus, ServerEntry
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.modules.tokenomics import Params as TokenomicsParams
from racenet.chain.modules.tokenomics import TokenomicsGenesis
from racenet.chain.modules.verification import (
    MsgCheck,
    MsgReport,
    MsgReverify,
    Params,
    Task,
    TaskStatus,
    VerificationGenesis,
    duty_message,
    duty_value,
    has_duty,
)
from racenet.chain.modules.verification.module import split_by_weight
from racenet.chain.scalars import Amount
from racenet.crypto.keys import PrivateKey
from racenet.crypto.threshold import DUTY_DST, key_sign
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, Chain, balances, beacon_secret, key
from tests.test_inference_chain import DEV, MODEL, TA, UNIT_PRICE, UNITS, InferenceChain

NODES = [key(1), key(2), key(3), key(4)]
WEIGHTS = [10, 15, 20, 25]
PRICE = UNIT_PRICE * UNITS
COST = (20 + 10) * PRICE
"""Every test request: 20 prompt tokens, 10 completion tokens."""
ANSWER = hashlib.sha256(b"answer").digest()
DEFAULT = Params()


def genesis(params: Params = DEFAULT) -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(WEIGHTS)],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*NODES, DEV, TA])),
            race=RaceGenesis(
                params=RaceParams(race_blocks=40),
                nodes=tuple(
                    RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
                    for i, (k, w) in enumerate(zip(NODES, WEIGHTS, strict=True))
                ),
            ),
            inference=InferenceGenesis(
                params=InferenceParams(max_tokens=512, expiry_blocks=8),
                models=(ModelEntry(MODEL, UNITS),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"https://node{i}.example.com")
                    for i, k in enumerate(NODES)
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(UNIT_PRICE)),
            verification=VerificationGenesis(params=params),
            tokenomics=TokenomicsGenesis(params=TokenomicsParams(training_fund_percent=0)),  # its own tests
        ),
    )


class VerificationChain(InferenceChain):
    def node(self, address: bytes) -> PrivateKey:
        return next(k for k in NODES if k.public_key.address == address)

    def serve(self, n: int) -> tuple[bytes, bytes]:
        """Start and finish request n; its (request id, executor)."""
        start = self.start_msg(n, max_tokens=10)
        assert self.run(TA, start)[0] == 0
        executor = self.request(start.request_id).executor
        finish = MsgFinishRequest(request_id=start.request_id, completion_tokens=10, response_hash=ANSWER)
        assert self.run(self.node(executor), finish) == (0, "")
        return start.request_id, executor

    def serve_many(self, ns: range, drop: bytes = b"", dropped: int = 0) -> list[tuple[bytes, bytes]]:
        """Start requests `ns` in one block, then finish them in another (but `dropped` of those routed to `drop`)."""
        starts = [self.start_msg(n, max_tokens=10) for n in ns]
        self.decided_block(*(self.tx(TA, s) for s in starts))
        self.decided_block()  # records the routing round
        served, finishes = [], []
        for s in starts:
            executor = self.request(s.request_id).executor
            if executor == drop and dropped > 0:
                dropped -= 1
                continue
            msg = MsgFinishRequest(request_id=s.request_id, completion_tokens=10, response_hash=ANSWER)
            finishes.append(self.tx(self.node(executor), msg))
            served.append((s.request_id, executor))
        results = self.decided_block(*finishes).tx_results
        assert all(r.code == 0 for r in results), [r.log for r in results]
        return served

    def task(self, request_id: bytes) -> Task:
        task = self.app.verification.keeper.tasks.get(self.app.read_context(), request_id)
        assert task is not None
        return task

    def until_round(self, request_id: bytes) -> None:
        """Run blocks until the task's duty round is recorded (its duties can be known)."""
        keeper = self.app.beacon.keeper
        while not keeper.output(self.app.read_context(), self.task(request_id).duty_round):
            self.decided_block()

    def proof(self, validator: PrivateKey, request_id: bytes, secret: int | None = None) -> bytes:
        """The validator's duty proof: its beacon key's signature of the task's duty message."""
        output = self.app.beacon.keeper.output(self.app.read_context(), self.task(request_id).duty_round)
        secret = beacon_secret(validator.public_key.address) if secret is None else secret
        return key_sign(secret, DUTY_DST, duty_message(CHAIN_ID, request_id, output))

    def owes(self, validator: PrivateKey, request_id: bytes) -> bool:
        task = self.task(request_id)
        keeper = self.app.verification.keeper
        weight, total = keeper.weight_share(self.app.read_context(), task.cycle, validator.public_key.address)
        return has_duty(duty_value(self.proof(validator, request_id)), task.check_ppm, weight, total)

    def checkers(self, request_id: bytes) -> list[PrivateKey]:
        """Validators that owe a check of the task (never its executor)."""
        executor = self.task(request_id).executor
        return [k for k in NODES if k.public_key.address != executor and self.owes(k, request_id)]

    def check(self, validator: PrivateKey, request_id: bytes, passed: bool) -> tuple[int, str]:
        return self.run(validator, MsgCheck(request_id, self.proof(validator, request_id), passed))

    def until_settled(self) -> dict[bytes, int]:
        """Run blocks until the current cycle's rewards are settled; each weight holder's share of the fees
        collected until then (held with its rewards, so released by the same rules)."""
        keeper = self.app.verification.keeper
        ctx = self.app.read_context
        schedule = self.app.race.keeper.schedule(ctx())
        params = keeper.params.get(ctx())
        cycle = schedule.cycle(self.app.height)
        settle_at = schedule.cycle_start(cycle + 1) + params.check_blocks + params.dispute_blocks
        while self.app.height < settle_at - 1:
            self.decided_block()
        fees = self.balance(FEE_COLLECTOR)
        weights = {k.public_key.address: w for k, w in zip(NODES, WEIGHTS, strict=True)}
        shares = dict(split_by_weight(fees, list(weights), weights.__getitem__))
        self.decided_block()
        assert self.balance(FEE_COLLECTOR) == 0
        return {a: shares.get(a, 0) for a in weights}

    def reputation(self, node: bytes) -> int:
        return int(self.app.verification.keeper.reputation.get(self.app.read_context(), node))


def start(tmp_path: Path, params: Params = DEFAULT) -> VerificationChain:
    c = Chain.start(tmp_path, genesis(params))
    chain = VerificationChain(c.app, c.driver)
    chain.until_beacon()
    return chain


@pytest.fixture
def chain(tmp_path: Path) -> VerificationChain:
    return start(tmp_path)


def chain_subsidy(chain: VerificationChain, request_id: bytes) -> int:
    """The subsidy minted for a task's fee (1 × the fee in phase 1 under the default cap)."""
    subsidy = int(chain.task(request_id).subsidy)
    assert subsidy == COST
    return subsidy


def checked_task(chain: VerificationChain, first: int = 1) -> tuple[bytes, bytes, PrivateKey]:
    """A served request that some validator owes a check of: (request id, executor, a checker)."""
    for n in range(first, first + 20):
        request_id, executor = chain.serve(n)
        chain.until_round(request_id)
        checkers = chain.checkers(request_id)
        if checkers:
            return request_id, executor, checkers[0]
    raise AssertionError("no request drew a checker in 20 tries")


def test_a_duty_is_proven_by_the_unique_signature_and_only_the_owed_check_counts(chain: VerificationChain) -> None:
    request_id, executor, checker = checked_task(chain)
    others = [k for k in NODES if k.public_key.address != executor and k not in chain.checkers(request_id)]
    for idle in others:
        assert chain.check(idle, request_id, True)[0] == Code.UNAUTHORIZED  # no duty: its signature is too high
    forged = chain.proof(checker, request_id, secret=12345)  # another key's signature cannot stand in
    assert chain.run(checker, MsgCheck(request_id, forged, True))[0] == Code.BAD_SIGNATURE
    assert chain.run(checker, MsgCheck(request_id, b"\x00" * 96, True))[0] == Code.BAD_SIGNATURE
    assert chain.run(checker, MsgCheck(request_id, b"\x00" * 48, True))[0] == Code.INVALID_MESSAGE
    assert chain.check(chain.node(executor), request_id, True)[0] == Code.UNAUTHORIZED
    assert chain.check(checker, request_id, True) == (0, "")
    assert chain.check(checker, request_id, True)[0] == Code.ALREADY_DONE
    assert chain.task(request_id).status == TaskStatus.CHECKED


def test_nobody_knows_a_duty_when_the_answer_is_committed_and_late_checks_are_refused(
    chain: VerificationChain,
) -> None:
    request_id, _ = chain.serve(1)
    task = chain.task(request_id)
    beacon = chain.app.beacon.keeper
    assert not beacon.output(chain.app.read_context(), task.duty_round)  # the Finish is in; its duty round is not
    chain.until_round(request_id)
    record = beacon.rounds.get(chain.app.read_context(), task.duty_round)
    assert record is not None and record.height > task.finish_height
    params = chain.app.verification.keeper.params.get(chain.app.read_context())
    while chain.app.height <= task.finish_height + params.check_blocks:
        chain.decided_block()
    for validator in NODES:
        assert chain.check(validator, request_id, True)[0] == Code.OUT_OF_RANGE


def test_a_checked_task_pays_half_to_the_checker_at_settlement_and_builds_reputation(
    chain: VerificationChain,
) -> None:
    request_id, executor, checker = checked_task(chain)
    assert chain.check(checker, request_id, True) == (0, "")
    before = {k.public_key.address: chain.balance(k) for k in NODES}
    held = chain.pending(executor)
    share = (COST + chain_subsidy(chain, request_id)) // 2  # half of the task's pay: its fee and subsidy
    fees = chain.until_settled()
    checker_address = checker.public_key.address
    assert chain.balance(checker_address) - before[checker_address] >= share + fees[checker_address]
    assert chain.pending(executor) == 0 and chain.pending(checker_address) == 0
    assert chain.balance(executor) - before[executor] == held - share + fees[executor]
    assert sum(fees.values()) > 0  # the fees collected so far went to the weight holders, by weight
    assert chain.reputation(executor) == 1
    assert chain.app.verification.keeper.tasks.get(chain.app.read_context(), request_id) is None


def test_reputation_lowers_the_check_probability() -> None:
    params = Params()
    assert params.check_ppm(0) == 1_000_000
    assert params.check_ppm(1) == 910_000
    assert params.check_ppm(params.trusted_cycles) == params.trusted_check_ppm
    assert params.check_ppm(10 * params.trusted_cycles) == params.trusted_check_ppm
    # the paper's example: 1 in 10 tasks checked, a validator with 50% of the weight checks 1 in 20
    owed = sum(has_duty(v << 44, 100_000, 50, 100) for v in range(1 << 20))
    assert abs(owed - (1 << 20) / 20) <= 1


def test_an_invalid_answer_refunds_the_user_forfeits_the_cycle_and_resets_reputation(
    chain: VerificationChain,
) -> None:
    served: dict[bytes, list[bytes]] = {}
    for n in range(1, 60):
        request_id, executor = chain.serve(n)
        served.setdefault(executor, []).append(request_id)
        chain.until_round(request_id)
        checkers = chain.checkers(request_id)
        if checkers and len(served[executor]) >= 2:
            bad_id, checker = request_id, checkers[0]
            break
    else:
        raise AssertionError("no executor served two tasks, the second one checked")
    dev_before = chain.balance(DEV)
    assert chain.check(checker, bad_id, False) == (0, "")
    assert chain.task(bad_id).status == TaskStatus.DISPUTED
    for voter in NODES:
        outside = voter.public_key.address not in (executor, checker.public_key.address)
        if outside and chain.task(bad_id).status == TaskStatus.DISPUTED:
            assert chain.run(voter, MsgReverify(bad_id, False)) == (0, "")
    assert chain.task(bad_id).status == TaskStatus.INVALID
    assert chain.balance(DEV) == dev_before + COST
    receipt = chain.app.inference.keeper.receipts.get(chain.app.read_context(), bad_id)
    assert receipt is not None and receipt.status == ReceiptStatus.REFUNDED  # nothing reimburses it again
    held = chain.pending(executor)
    assert held >= COST  # its other tasks' pay, still held
    burned = chain.app.bank.keeper.burned.get(chain.app.read_context())
    executor_balance = chain.balance(executor)
    fees = chain.until_settled()
    assert chain.balance(executor) == executor_balance  # everything of the cycle is forfeited, its fee share too
    assert chain.app.bank.keeper.burned.get(chain.app.read_context()) == burned + held + fees[executor]
    assert chain.reputation(executor) == 0


def test_a_coalition_below_half_cannot_save_its_executor(tmp_path: Path) -> None:
    chain = start(tmp_path)
    light, colluder = NODES[0].public_key.address, NODES[1]  # 10 + 15 = 25 of 70
    for n in range(1, 200):
        request_id, executor = chain.serve(n)
        if executor != light:
            continue
        chain.until_round(request_id)
        honest = [k for k in chain.checkers(request_id) if k is not colluder]
        if honest:
            break
    else:
        raise AssertionError("no task of the light executor drew an honest checker")
    assert chain.check(honest[0], request_id, False) == (0, "")
    if chain.owes(colluder, request_id):
        assert chain.check(colluder, request_id, True)[0] == 0  # its pass does not close the dispute
    else:
        assert chain.run(colluder, MsgReverify(request_id, True)) == (0, "")
    assert chain.task(request_id).status == TaskStatus.DISPUTED  # 25 of 70 for valid: no majority
    for voter in NODES[2:]:
        if voter is not honest[0] and chain.task(request_id).status == TaskStatus.DISPUTED:
            assert chain.run(voter, MsgReverify(request_id, False)) == (0, "")
    assert chain.task(request_id).status == TaskStatus.INVALID
    misjudged = chain.app.verification.keeper.misjudged
    assert misjudged.get(chain.app.read_context(), (chain.task(request_id).cycle, colluder.public_key.address)) == 1
    before = chain.balance(colluder)
    fees = chain.until_settled()
    assert fees[colluder.public_key.address] > 0 and chain.balance(colluder) == before  # misjudged: nothing released
    assert chain.pending(colluder.public_key.address) == 0


def test_an_honest_executor_wrongly_flagged_loses_nothing(chain: VerificationChain) -> None:
    request_id, executor, accuser = checked_task(chain)
    assert chain.check(accuser, request_id, False) == (0, "")
    for voter in NODES:
        outside = voter.public_key.address not in (executor, accuser.public_key.address)
        if outside and chain.task(request_id).status == TaskStatus.DISPUTED:
            assert chain.run(voter, MsgReverify(request_id, True)) == (0, "")
    assert chain.task(request_id).status == TaskStatus.VALID
    held = chain.pending(executor)
    before = chain.balance(executor)
    fees = chain.until_settled()
    assert chain.balance(executor) == before + held + fees[executor]
    assert chain.reputation(executor) == 1


def test_a_dispute_nobody_decides_stays_valid_and_its_voters_lost_to_no_majority(chain: VerificationChain) -> None:
    """Invalid votes below half, the rest too slow to vote: the answer stays valid, and the voters are not misjudged
    (on a devnet under load, honest validators that caught a cheat lost their cycle's reward this way)."""
    request_id, executor, accuser = checked_task(chain)
    assert chain.check(accuser, request_id, False) == (0, "")
    keeper = chain.app.verification.keeper
    weights = {k.public_key.address: w for k, w in zip(NODES, WEIGHTS, strict=True)}
    others = [k for k in NODES if k.public_key.address not in (executor, accuser.public_key.address)]
    voters = [accuser]
    for voter in sorted(others, key=lambda k: weights[k.public_key.address]):
        invalid = sum(weights[v.public_key.address] for v in [*voters, voter])
        if 2 * invalid <= sum(WEIGHTS):
            assert chain.run(voter, MsgReverify(request_id, False)) == (0, "")
            voters.append(voter)
    params = keeper.params.get(chain.app.read_context())
    for _ in range(params.dispute_blocks + 1):
        chain.decided_block()
    assert chain.task(request_id).status == TaskStatus.VALID
    assert chain.run(NODES[0], MsgReverify(request_id, False))[0] == Code.INVALID_MESSAGE
    for voter in voters:
        assert (
            keeper.misjudged.get(chain.app.read_context(), (chain.task(request_id).cycle, voter.public_key.address))
            == 0
        )


def test_a_validator_that_skipped_its_owed_checks_loses_its_cycle_reward(tmp_path: Path) -> None:
    chain = start(tmp_path, Params(shortfall_sigmas=1))
    lazy = NODES[3]  # 25 of 70: owes about a third of every task's check
    diligent = NODES[2]
    served = chain.serve_many(range(1, 25))
    chain.until_round(served[-1][0])
    checked = 0
    for request_id, executor in served:
        if executor != diligent.public_key.address and chain.owes(diligent, request_id):
            assert chain.check(diligent, request_id, True)[0] == 0
            checked += 1
    assert checked > 0
    lazy_held = chain.pending(lazy.public_key.address)
    diligent_held = chain.pending(diligent.public_key.address)
    assert lazy_held > 0 and diligent_held > 0
    before_lazy, before_diligent = chain.balance(lazy), chain.balance(diligent)
    chain.until_settled()
    assert chain.balance(lazy) == before_lazy  # owed several checks, did none: nothing released, fees neither
    assert chain.balance(diligent) - before_diligent > 0
    assert chain.pending(lazy.public_key.address) == chain.pending(diligent.public_key.address) == 0


def test_an_executor_that_drops_routed_requests_gets_its_work_share(chain: VerificationChain) -> None:
    dropper = NODES[3].public_key.address
    served = chain.serve_many(range(1, 16), drop=dropper, dropped=2)
    finished = sum(executor == dropper for _, executor in served)
    assert finished >= 1
    keeper = chain.app.verification.keeper
    cycle = chain.app.race.keeper.schedule(chain.app.read_context()).cycle(chain.app.height)
    assert keeper.routed.get(chain.app.read_context(), (cycle, dropper)) == finished  # the drops are still open
    expiry = chain.app.inference.keeper.params.get(chain.app.read_context()).expiry_blocks
    for _ in range(expiry):
        chain.decided_block()
    assert chain.app.race.keeper.schedule(chain.app.read_context()).cycle(chain.app.height) == cycle
    assert keeper.routed.get(chain.app.read_context(), (cycle, dropper)) == finished + 2  # expired on it
    held = chain.pending(dropper)
    before = chain.balance(dropper)
    fees = chain.until_settled()
    released = chain.balance(dropper) - before
    share = min(100 * finished, (finished + 2) * 90)
    assert released == (held + fees[dropper]) * share // ((finished + 2) * 90) < held + fees[dropper]


def test_a_request_routed_in_one_cycle_and_finished_in_the_next_counts_once_in_the_next(
    chain: VerificationChain,
) -> None:
    """An honest executor loses no work share to a request that straddles a cycle boundary."""
    schedule = chain.app.race.keeper.schedule(chain.app.read_context())
    cycle = schedule.cycle(chain.app.height)
    while chain.app.height < schedule.cycle_start(cycle + 1) - 3:
        chain.decided_block()
    start = chain.start_msg(90, max_tokens=10)
    chain.decided_block(chain.tx(TA, start))
    chain.decided_block()  # routed in the cycle's last blocks
    executor = chain.request(start.request_id).executor
    assert executor
    while chain.app.height < schedule.cycle_start(cycle + 1):
        chain.decided_block()
    msg = MsgFinishRequest(request_id=start.request_id, completion_tokens=10, response_hash=ANSWER)
    assert chain.run(chain.node(executor), msg) == (0, "")
    ctx = chain.app.read_context()
    keeper = chain.app.verification.keeper
    assert keeper.routed.get(ctx, (cycle, executor)) == 0
    assert (keeper.routed.get(ctx, (cycle + 1, executor)), keeper.finished.get(ctx, (cycle + 1, executor))) == (1, 1)


def test_windows_longer_than_a_cycle_still_settle_every_cycle(tmp_path: Path) -> None:
    chain = start(tmp_path, Params(check_blocks=40, dispute_blocks=30))  # 70 blocks > the 51-block cycle
    _, executor = chain.serve(1)
    held = chain.pending(executor)
    before = chain.balance(executor)
    fees = chain.until_settled()
    assert chain.pending(executor) == 0 and chain.balance(executor) == before + held + fees[executor]


def serve_two_by_one_executor(chain: VerificationChain) -> tuple[bytes, bytes]:
    """Two tasks of one executor (the second is reported): (reported request id, executor)."""
    served: dict[bytes, list[bytes]] = {}
    for n in range(1, 40):
        request_id, executor = chain.serve(n)
        served.setdefault(executor, []).append(request_id)
        if len(served[executor]) == 2:
            return request_id, executor
    raise AssertionError("no executor served two tasks")


def test_a_right_report_refunds_the_fee_and_splits_a_bounty_no_larger_than_the_task(chain: VerificationChain) -> None:
    request_id, executor = serve_two_by_one_executor(chain)
    fee = int(DEFAULT.report_fee)
    dev_before = chain.balance(DEV)
    assert chain.run(TA, MsgReport(request_id))[0] == Code.UNAUTHORIZED  # only the developer who paid
    assert chain.run(DEV, MsgReport(request_id)) == (0, "")
    assert chain.balance(DEV) == dev_before - fee - FEE
    assert chain.run(DEV, MsgReport(request_id))[0] == Code.ALREADY_DONE
    dev_before = chain.balance(DEV)
    voters = [k for k in NODES if k.public_key.address != executor]
    before = {k.public_key.address: chain.balance(k) for k in voters}
    for voter in voters:
        if chain.task(request_id).status == TaskStatus.DISPUTED:
            assert chain.run(voter, MsgReverify(request_id, False)) == (0, "")
    assert chain.task(request_id).status == TaskStatus.INVALID
    # the developer: the task's cost refunded, the fee back, and half of a bounty of at most the task's cost
    assert chain.balance(DEV) == dev_before + COST + fee + COST // 2
    received = sum(int(chain.balance(k)) - int(before[k.public_key.address]) for k in voters)
    votes = sum(1 for _ in voters)
    assert received + votes * FEE >= COST - COST // 2  # the verifiers share the other half (their tx fees aside)


def test_a_wrong_report_pays_its_fee_to_the_verifiers_who_upheld_the_answer(chain: VerificationChain) -> None:
    request_id, executor = chain.serve(1)
    fee = int(DEFAULT.report_fee)
    dev_before = chain.balance(DEV)
    assert chain.run(DEV, MsgReport(request_id)) == (0, "")
    dev_before -= FEE
    upholders = []
    for voter in NODES:
        if voter.public_key.address != executor and chain.task(request_id).status == TaskStatus.DISPUTED:
            upholders.append(voter)
            assert chain.run(voter, MsgReverify(request_id, True)) == (0, "")
    assert chain.task(request_id).status == TaskStatus.VALID
    assert chain.balance(DEV) == dev_before - fee
    escrows = chain.app.bank.keeper.module_escrows(chain.app.read_context(), "verification")
    assert escrows == []  # the whole fee went to the upholders
    assert chain.pending(executor) == 2 * COST  # the executor keeps its pay: the fee and phase 1's capped subsidy


def test_a_report_after_the_check_window_of_its_cycle_is_refused(chain: VerificationChain) -> None:
    request_id, _ = chain.serve(1)
    schedule = chain.app.race.keeper.schedule(chain.app.read_context())
    last = schedule.cycle_start(chain.task(request_id).cycle + 1) + DEFAULT.check_blocks - 1
    while chain.app.height < last:
        chain.decided_block()
    assert chain.run(DEV, MsgReport(request_id))[0] == Code.OUT_OF_RANGE


def test_a_pass_later_overturned_counts_against_its_checker_and_earns_nothing(chain: VerificationChain) -> None:
    for n in range(1, 60):
        request_id, executor = chain.serve(n)
        chain.until_round(request_id)
        checkers = chain.checkers(request_id)
        if len(checkers) >= 2:
            break
    else:
        raise AssertionError("no task drew two checkers")
    lenient, strict = checkers[:2]
    assert chain.check(lenient, request_id, True) == (0, "")
    assert chain.check(strict, request_id, False) == (0, "")
    for voter in NODES:
        outside = voter.public_key.address not in (executor, lenient.public_key.address, strict.public_key.address)
        if outside and chain.task(request_id).status == TaskStatus.DISPUTED:
            assert chain.run(voter, MsgReverify(request_id, False)) == (0, "")
    task = chain.task(request_id)
    assert task.status == TaskStatus.INVALID and task.checker == b""
    misjudged = chain.app.verification.keeper.misjudged
    assert misjudged.get(chain.app.read_context(), (task.cycle, lenient.public_key.address)) == 1


def test_a_vote_a_block_made_stale_stays_in_the_mempool_and_its_senders_next_tx_is_not_stranded(
    chain: VerificationChain,
) -> None:
    """A re-verification vote passes CheckTx; the next block decides the dispute without it. On the recheck
    after that block only the ante runs, so the vote stays, is included and fails there (fee and sequence
    used), and the same sender's next transaction, queued behind it, is included too."""
    weights = dict(zip((k.public_key.address for k in NODES), WEIGHTS, strict=True))

    def pick() -> tuple[bytes, PrivateKey, PrivateKey, PrivateKey]:
        """A task, an accuser that owes its check, and two other voters: the heavier decides with the accuser."""
        for n in range(1, 40):
            request_id, executor = chain.serve(n)
            chain.until_round(request_id)
            for accuser in chain.checkers(request_id):
                late, decider = sorted(
                    (k for k in NODES if k.public_key.address not in (executor, accuser.public_key.address)),
                    key=lambda k: weights[k.public_key.address],
                )
                if 2 * (weights[accuser.public_key.address] + weights[decider.public_key.address]) > sum(WEIGHTS):
                    return request_id, accuser, late, decider
        raise AssertionError("no task drew a suitable accuser")

    request_id, accuser, late, decider = pick()
    assert chain.check(accuser, request_id, False) == (0, "")
    app = chain.app
    stale = chain.tx(late, MsgReverify(request_id, False))
    queued = chain.tx(late, MsgSend(DEV.public_key.address, 1))
    assert app.check_tx(stale).code == 0 and app.check_tx(queued).code == 0
    chain.decided_block(chain.tx(decider, MsgReverify(request_id, False)))
    assert chain.task(request_id).status == TaskStatus.INVALID
    assert app.check_tx(stale, recheck=True).code == 0 and app.check_tx(queued, recheck=True).code == 0
    stale_result, queued_result = chain.decided_block(stale, queued).tx_results
    assert stale_result.code == Code.INVALID_MESSAGE and queued_result.code == 0


def test_a_dispute_on_cycle_evidence_does_not_count_an_earlier_pass_and_evidence_must_be_the_executors(
    chain: VerificationChain,
) -> None:
    """A check that passed an answer alone was right about it: when another checker fails it on evidence over the
    cycle (answers the first never saw), the pass is not a vote, and its checker re-verifies like anyone else."""
    served = chain.serve_many(range(1, 13))
    by_executor: dict[bytes, list[bytes]] = {}
    for request_id, executor in served:
        by_executor.setdefault(executor, []).append(request_id)
    for request_id, _ in served:
        chain.until_round(request_id)
    found = next(
        (
            (request_id, executor, checkers)
            for request_id, executor in served
            if len(by_executor[executor]) >= 2 and len(checkers := chain.checkers(request_id)) >= 2
        ),
        None,
    )
    assert found is not None, "no task of an executor with two tasks drew two checkers"
    request_id, executor, (lenient, strict) = found[0], found[1], found[2][:2]
    evidence = tuple(r for r in by_executor[executor] if r != request_id)
    others = [r for r, e in served if e != executor]
    assert chain.check(lenient, request_id, True) == (0, "")

    strays = (others[0],) if others else (b"\x07" * 32,)
    stray = MsgCheck(request_id, chain.proof(strict, request_id), False, strays)
    assert chain.run(strict, stray)[0] == Code.INVALID_MESSAGE, "evidence from another executor is refused"
    passed_with_evidence = MsgCheck(request_id, chain.proof(strict, request_id), True, evidence)
    assert chain.run(strict, passed_with_evidence)[0] == Code.INVALID_MESSAGE

    assert chain.run(strict, MsgCheck(request_id, chain.proof(strict, request_id), False, evidence)) == (0, "")
    task = chain.task(request_id)
    assert task.status == TaskStatus.DISPUTED and task.evidence == evidence
    votes = dict(chain.app.verification.keeper.votes.items(chain.app.read_context(), (request_id,)))
    assert (request_id, lenient.public_key.address) not in votes, "the earlier pass is no vote on the evidence"
    for voter in NODES:
        if voter.public_key.address != executor and chain.task(request_id).status == TaskStatus.DISPUTED:
            assert chain.run(voter, MsgReverify(request_id, False)) == (0, "")
    assert chain.task(request_id).status == TaskStatus.INVALID
    misjudged = chain.app.verification.keeper.misjudged
    assert misjudged.get(chain.app.read_context(), (task.cycle, lenient.public_key.address)) == 0
