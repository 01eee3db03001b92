"""verification: randomized spot checks of inference, majority re-verification, reputation, and the release of
held rewards (whitepaper §6, "Reward accumulation", "Randomized task verification", "Reputation").

Every finished request becomes a task. Whether a validator must check it is decided by a unique signature: the
validator signs (chain, request id, beacon round after the Finish) with its registered BLS beacon key; the hash of
that signature, below the task's check probability times the validator's share of weight, is a duty
(`has_duty`). Nobody knows the round when the answer is committed, only the validator can compute its own duties,
and it cannot pick another signature, so it can neither escape a duty nor invent one; its `MsgCheck` carries the
signature as proof, and anyone can recheck it from chain data.

A passed check earns the checker `checker_share_percent` of the task's pay (settled with the cycle). A failed
check opens a re-verification: any weight holder votes (`MsgReverify`) after checking itself; the executor's own
weight counts for its answer. Once more than half of the total weight (of the task's cycle) holds one verdict it
is final: invalid →
the developer gets the task's cost back, the executor is caught (all its rewards of the cycle are forfeited and
its reputation resets to 0); valid → nothing happens to the executor. A dispute nobody decides within
`dispute_blocks` stays valid: an honest executor wrongly flagged loses nothing, and nobody lost to a majority.
Voters on the losing side of a majority's verdict are recorded (`misjudged`), as are the Race's voters on the
losing side of an escalated claim (its misvotes, counted at the next cycle's first block): a misjudged node loses
the cycle's reward share.

Rewards are held per cycle (`held/<cycle>/<node>`, the inference module's reward escrows) and settled
`check_blocks + dispute_blocks` after the cycle ends, when every check and dispute of its tasks is closed:
caught or misjudged → all burned; otherwise released × work share × check share, the rest burned
(docs/verification.md):
- work share = min(1, finished / (routed × min_work_percent / 100)) for an executor with routed requests, routed
  counting the requests it finished, and those reassigned away from it or expired on it, in the cycle that
  happened (so a request routed in one cycle and finished in the next counts once, in the next);
- check share = min(1, done / required), required = owed - shortfall_sigmas·√owed, owed = Σ task check
  probabilities × the validator's weight share. Weight shares (for duties and owed checks) are those of the
  task's cycle, kept at its first block.
The transaction fees collected so far join the cycle's held rewards of its weight holders, by weight, first.
A node that was not caught and served tasks gains one reputation point per settled cycle.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import ClassVar, Protocol

from racenet.chain.authority import require_authority
from racenet.chain.collections import ADDRESS, HASH, U64, EscrowIds, Item, KeySet, Map, Record, UintItem, UintMap, pair
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
from racenet.chain.modules.bank.module import FEE_COLLECTOR
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.modules.tokenomics.types import MINTER, TRAINING_FUND
from racenet.chain.modules.verification.types import (
    ACCOUNTS,
    PARAMS,
    PPM,
    REPUTATION,
    TASK,
    TASKS,
    Accounts,
    CycleAccount,
    MsgCheck,
    MsgReport,
    MsgReverify,
    MsgUpdateParams,
    OpenTask,
    OpenTasks,
    Params,
    Reputation,
    ReputationEntry,
    Task,
    TaskStatus,
    VerificationGenesis,
    duty_message,
    duty_value,
    has_duty,
)
from racenet.chain.scalars import Address, Amount
from racenet.crypto.address import encode_address
from racenet.crypto.threshold import DUTY_DST, key_verify

NAME = "verification"
PASS, FAIL = 1, 2
"""Stored outcomes of a check or a re-verification vote (absence means none)."""


class RaceKeeper(Protocol):
    """What verification needs of race: the cycle schedule and the weights it snapshots."""

    def schedule(self, ctx: Context) -> Schedule: ...
    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]: ...
    def misvoters(self, ctx: Context, cycle: int) -> list[tuple[bytes, int]]: ...


class BeaconKeeper(Protocol):
    """What verification needs of the beacon: a round unknown at Finish, and validators' BLS keys."""

    def round_after(self, ctx: Context, height: int) -> int: ...
    def output(self, ctx: Context, round_: int) -> bytes: ...
    def key_of(self, ctx: Context, address: bytes) -> bytes: ...


class BankKeeper(Protocol):
    """What verification needs of bank: the report fees it holds, and the fees collected for the weight holders."""

    def balance(self, ctx: Context, address: bytes) -> int: ...
    def lock(self, ctx: Context, owner: bytes, module: str, escrow_id: bytes, amount: int) -> None: ...
    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None: ...
    def module_escrows(self, ctx: Context, module: str) -> list[tuple[bytes, int]]: ...


class RewardEscrows(Protocol):
    """What verification needs of inference: its executors' reward escrows."""

    def pending_reward(self, ctx: Context, node: bytes) -> int: ...
    def move_reward(self, ctx: Context, source: bytes, destination: bytes, amount: int) -> None: ...
    def pay_reward(self, ctx: Context, node: bytes, recipient: bytes, amount: int) -> None: ...
    def burn_reward(self, ctx: Context, node: bytes, amount: int) -> None: ...
    def mark_refunded(self, ctx: Context, request_id: bytes) -> None: ...
    def fund_reward(self, ctx: Context, payer: bytes, node: bytes, amount: int) -> None: ...


class Issuer(Protocol):
    """What verification needs of tokenomics: the subsidy a fee mints (to `MINTER`) and the training fund's share
    of released rewards."""

    def issue_for_fee(self, ctx: Context, executor: bytes, fee: int) -> int: ...
    def training_share(self, ctx: Context, pooled: int, released: int) -> int: ...


class Keeper(ModuleKeeper):
    """The only reader and writer of verification state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    reputation = UintMap(b"reputation/", ADDRESS)
    tasks = Map(b"task/", HASH, Record(Task))
    cycle_tasks = KeySet(b"cycle_task/", pair(U64, HASH))
    checks = UintMap(b"check/", pair(HASH, ADDRESS))
    votes = UintMap(b"vote/", pair(HASH, ADDRESS))
    deadlines = KeySet(b"deadline/", pair(U64, HASH))
    held = UintMap(b"held/", pair(U64, ADDRESS))
    routed = UintMap(b"routed/", pair(U64, ADDRESS))
    finished = UintMap(b"finished/", pair(U64, ADDRESS))
    done = UintMap(b"done/", pair(U64, ADDRESS))
    owed_ppm = UintMap(b"owed_ppm/", U64)
    caught = KeySet(b"caught/", pair(U64, ADDRESS))
    cycle_weights = UintMap(b"cycle_weight/", pair(U64, ADDRESS))
    cycle_totals = UintMap(b"cycle_total/", U64)
    snapshots = UintItem(b"snapshots")
    report_escrows = EscrowIds(b"report/", HASH)
    misjudged = UintMap(b"misjudged/", pair(U64, ADDRESS))

    def __init__(self, bank: BankKeeper, race: RaceKeeper, beacon: BeaconKeeper) -> None:
        self.bank = bank
        self.race = race
        self.beacon = beacon
        self.rewards: RewardEscrows | None = None
        self.issuer: Issuer | None = None

    def use_rewards(self, rewards: RewardEscrows) -> None:
        """Wire the inference module's reward escrows (inference calls this module's hooks, and the other way)."""
        self.rewards = rewards

    def use_issuer(self, issuer: Issuer) -> None:
        """Wire tokenomics, which mints the subsidy of each fee and takes the training fund's share."""
        self.issuer = issuer

    def _escrows(self) -> RewardEscrows:
        if self.rewards is None:
            raise ChainError(Code.INTERNAL, "verification has no reward escrows wired")
        return self.rewards

    def _issuer(self) -> Issuer:
        if self.issuer is None:
            raise ChainError(Code.INTERNAL, "verification has no issuer wired")
        return self.issuer

    def hold_reward(self, ctx: Context, payer: bytes, node: bytes, amount: int) -> None:
        """Add `amount` from `payer` to `node`'s held reward of the current cycle (released by the same rules)."""
        if amount:
            self._escrows().fund_reward(ctx, payer, node, amount)
            self._add(ctx, self.held, self.race.schedule(ctx).cycle(ctx.block.height), node, amount)

    def snapshot_weights(self, ctx: Context) -> None:
        """At a cycle's first block, keep its weights (duties and owed checks of its tasks are shares of these),
        and count the Race's misvotes of the cycle just tallied as misjudgements of that cycle."""
        cycle = self.race.schedule(ctx).cycle(ctx.block.height)
        if self.snapshots.get(ctx) > cycle:
            return
        total = 0
        for node, weight in self.race.all_weights(ctx):
            self.cycle_weights.set(ctx, (cycle, node), weight)
            total += weight
        self.cycle_totals.set(ctx, cycle, total)
        self.snapshots.set(ctx, cycle + 1)
        if cycle > 0:
            for voter, count in self.race.misvoters(ctx, cycle - 1):
                self._misjudge(ctx, cycle - 1, voter, count, "race vote")

    def weight_share(self, ctx: Context, cycle: int, node: bytes) -> tuple[int, int]:
        """A node's weight and the total weight in a cycle, as its first block had them."""
        return int(self.cycle_weights.get(ctx, (cycle, node))), int(self.cycle_totals.get(ctx, cycle))

    def check_ppm(self, ctx: Context, node: bytes) -> int:
        """The probability (ppm) that a task of this node is checked now, from its reputation."""
        return self.params.get(ctx).check_ppm(self.reputation.get(ctx, node))

    def on_fail(self, ctx: Context, executor: bytes) -> None:
        """Hook from inference: a request routed to `executor` was reassigned away from it or expired on it."""
        self._add(ctx, self.routed, self.race.schedule(ctx).cycle(ctx.block.height), executor, 1)

    def on_finish(self, ctx: Context, request_id: bytes, executor: bytes, developer: bytes, cost: int) -> None:
        """Hook from inference: a request was finished and its cost held as the executor's reward; the subsidy
        tokenomics mints for the cost is held beside it (if minting fails, the request still finishes)."""
        cycle = self.race.schedule(ctx).cycle(ctx.block.height)
        check_ppm = self.check_ppm(ctx, executor)
        subsidy = 0
        with isolated(ctx, NAME, f"subsidy of request {request_id.hex()}") as item:
            minted = self._issuer().issue_for_fee(item, executor, cost)
            self.hold_reward(item, MINTER, executor, minted)
            subsidy = minted
        task = Task(
            executor=Address(executor),
            developer=Address(developer),
            cycle=cycle,
            finish_height=ctx.block.height,
            duty_round=self.beacon.round_after(ctx, ctx.block.height),
            check_ppm=check_ppm,
            cost=Amount(cost),
            status=TaskStatus.OPEN,
            subsidy=Amount(subsidy),
        )
        self.tasks.set(ctx, request_id, task)
        self.cycle_tasks.add(ctx, (cycle, request_id))
        self._add(ctx, self.routed, cycle, executor, 1)
        self._add(ctx, self.finished, cycle, executor, 1)
        self._add(ctx, self.held, cycle, executor, cost)
        self.owed_ppm.set(ctx, cycle, self.owed_ppm.get(ctx, cycle) + check_ppm)

    @staticmethod
    def _add(ctx: Context, counter: UintMap[tuple[int, bytes]], cycle: int, node: bytes, amount: int) -> None:
        key = (cycle, node)
        counter.set(ctx, key, counter.get(ctx, key) + amount)

    def misjudge_now(self, ctx: Context, node: bytes, what: str) -> None:
        """Hook from training: `node` passed a honeypot or voted on the losing side of a proof-of-learning
        re-verification; like a misjudged check, it costs the node the current cycle's reward share."""
        self._misjudge(ctx, self.race.schedule(ctx).cycle(ctx.block.height), node, 1, what)

    def _misjudge(self, ctx: Context, cycle: int, node: bytes, count: int, what: str) -> None:
        """Record that `node` voted on the losing side `count` times (its cycle's reward share is lost)."""
        self._add(ctx, self.misjudged, cycle, node, count)
        ctx.emit("verification_misjudged", node=encode_address(node), cycle=str(cycle), count=str(count), what=what)

    def _task(self, ctx: Context, request_id: bytes) -> Task:
        task = self.tasks.get(ctx, request_id)
        if task is None:
            raise ChainError(Code.NOT_FOUND, "no finished task with this request id is open for checks")
        return task

    def _require_duty(self, ctx: TxContext, request_id: bytes, task: Task, proof: bytes) -> None:
        """The signer is a weight holder other than the executor and `proof` shows it owes this check."""
        signer = ctx.tx.signer
        if signer == task.executor:
            raise ChainError(Code.UNAUTHORIZED, "an executor cannot check its own task")
        output = self.beacon.output(ctx, task.duty_round)
        if not output:
            raise ChainError(Code.TOO_EARLY, f"the task's duty round {task.duty_round} is not recorded yet")
        key = self.beacon.key_of(ctx, signer)
        if not key:
            raise ChainError(Code.UNAUTHORIZED, "the signer has no registered beacon key to prove a duty with")
        if not key_verify(key, DUTY_DST, duty_message(ctx.block.chain_id, request_id, output), proof):
            raise ChainError(Code.BAD_SIGNATURE, "the duty proof is not the signer's signature of this task's duty")
        weight, total = self.weight_share(ctx, task.cycle, signer)
        if not has_duty(duty_value(proof), task.check_ppm, weight, total):
            raise ChainError(Code.UNAUTHORIZED, "the signer does not owe a check of this task")

    def handle_check(self, ctx: TxContext, msg: MsgCheck) -> None:
        """verification/Check: a validator reports the check it owed; a failure opens re-verification."""
        task = self._task(ctx, msg.request_id)
        params = self.params.get(ctx)
        if ctx.block.height > task.finish_height + params.check_blocks:
            raise ChainError(Code.OUT_OF_RANGE, "the task's check window has closed")
        if self.checks.has(ctx, (msg.request_id, ctx.tx.signer)):
            raise ChainError(Code.ALREADY_DONE, "this validator already reported its check of the task")
        self._require_duty(ctx, msg.request_id, task, msg.proof)
        self._require_evidence(ctx, task, msg.evidence)
        self.checks.set(ctx, (msg.request_id, ctx.tx.signer), PASS if msg.passed else FAIL)
        self._add(ctx, self.done, task.cycle, ctx.tx.signer, 1)
        if msg.passed and task.status == TaskStatus.OPEN:
            self.tasks.set(
                ctx, msg.request_id, dataclasses.replace(task, status=TaskStatus.CHECKED, checker=ctx.tx.signer)
            )
        elif not msg.passed and task.status in (TaskStatus.OPEN, TaskStatus.CHECKED):
            self._open_dispute(ctx, msg.request_id, task, reported=False, evidence=msg.evidence)
            self.votes.set(ctx, (msg.request_id, ctx.tx.signer), FAIL)
            self._decide(ctx, msg.request_id)
        elif (
            task.status == TaskStatus.DISPUTED
            and not task.evidence
            and not self.votes.has(ctx, (msg.request_id, ctx.tx.signer))
        ):
            self.votes.set(ctx, (msg.request_id, ctx.tx.signer), PASS if msg.passed else FAIL)
            self._decide(ctx, msg.request_id)
        ctx.emit("verification_check", request_id=msg.request_id.hex(), passed=str(msg.passed).lower())

    def _require_evidence(self, ctx: Context, task: Task, evidence: tuple[bytes, ...]) -> None:
        """Evidence names unsettled tasks of the same executor and cycle."""
        for request_id in evidence:
            other = self.tasks.get(ctx, request_id)
            if other is None or other.executor != task.executor or other.cycle != task.cycle:
                raise ChainError(
                    Code.INVALID_MESSAGE, f"evidence {request_id.hex()} is no task of the executor in the same cycle"
                )

    def _open_dispute(
        self, ctx: TxContext, request_id: bytes, task: Task, *, reported: bool, evidence: tuple[bytes, ...] = ()
    ) -> None:
        """Re-verification of a task. A check that passed the answer already counts as a vote for it, unless the
        dispute rests on evidence over the cycle that the passing checker judged without."""
        deadline = ctx.block.height + self.params.get(ctx).dispute_blocks
        disputed = dataclasses.replace(
            task, status=TaskStatus.DISPUTED, dispute_deadline=deadline, reported=reported, evidence=evidence
        )
        self.tasks.set(ctx, request_id, disputed)
        self.deadlines.add(ctx, (deadline, request_id))
        if task.checker and not evidence:
            self.votes.set(ctx, (request_id, task.checker), PASS)
        ctx.emit("verification_dispute", request_id=request_id.hex(), by=encode_address(ctx.tx.signer))

    def handle_report(self, ctx: TxContext, msg: MsgReport) -> None:
        """verification/Report: the developer pays the report fee and the task goes to re-verification."""
        task = self._task(ctx, msg.request_id)
        params = self.params.get(ctx)
        if ctx.tx.signer != task.developer:
            raise ChainError(Code.UNAUTHORIZED, "only the developer who paid for the request can report it")
        if task.status not in (TaskStatus.OPEN, TaskStatus.CHECKED):
            raise ChainError(Code.ALREADY_DONE, f"the task is already {task.status.value}")
        last = self.race.schedule(ctx).cycle_start(task.cycle + 1) + params.check_blocks - 1
        if ctx.block.height > last:
            raise ChainError(Code.OUT_OF_RANGE, f"reports of this task were taken until height {last}")
        self.bank.lock(ctx, ctx.tx.signer, NAME, self.report_escrows.id(msg.request_id), params.report_fee)
        self._open_dispute(ctx, msg.request_id, task, reported=True)

    def handle_reverify(self, ctx: TxContext, msg: MsgReverify) -> None:
        """verification/Reverify: a weight holder's verdict on a disputed task."""
        task = self._task(ctx, msg.request_id)
        if task.status != TaskStatus.DISPUTED:
            raise ChainError(Code.INVALID_MESSAGE, "the task is not under re-verification")
        if ctx.tx.signer == task.executor:
            raise ChainError(Code.UNAUTHORIZED, "the executor's own weight already counts for its answer")
        if self.weight_share(ctx, task.cycle, ctx.tx.signer)[0] <= 0:
            raise ChainError(Code.UNAUTHORIZED, "only holders of weight in the task's cycle re-verify")
        if self.votes.has(ctx, (msg.request_id, ctx.tx.signer)):
            raise ChainError(Code.ALREADY_DONE, "this validator already voted on the task")
        self.votes.set(ctx, (msg.request_id, ctx.tx.signer), PASS if msg.valid else FAIL)
        self._decide(ctx, msg.request_id)

    def _decide(self, ctx: Context, request_id: bytes) -> None:
        """Close a dispute once more than half of the total weight of the task's cycle holds one verdict."""
        task = self._task(ctx, request_id)
        executor_weight, total = self.weight_share(ctx, task.cycle, task.executor)
        valid, invalid = executor_weight, 0
        for (_, voter), verdict in self.votes.items(ctx, (request_id,)):
            weight = self.weight_share(ctx, task.cycle, voter)[0]
            if verdict == PASS:
                valid += weight
            else:
                invalid += weight
        if 2 * invalid > total:
            self._close_dispute(ctx, request_id, task, TaskStatus.INVALID)
        elif 2 * valid > total:
            self._close_dispute(ctx, request_id, task, TaskStatus.VALID)

    def _close_dispute(
        self, ctx: Context, request_id: bytes, task: Task, verdict: TaskStatus, *, decided: bool = True
    ) -> None:
        """Record the verdict; only a majority's `decided` one puts the voters against it on the losing side (a
        dispute left undecided at its deadline stays valid, and its invalid votes cost nothing: they lost to no
        majority, and the voters that would have made one may only have been slow)."""
        self.deadlines.remove(ctx, (task.dispute_deadline, request_id))
        for (_, voter), vote in self.votes.items(ctx, (request_id,)):
            if decided and (vote == PASS) != (verdict == TaskStatus.VALID):
                self._misjudge(ctx, task.cycle, voter, 1, f"re-verification of {request_id.hex()}")
        winners = [
            voter
            for (_, voter), vote in self.votes.items(ctx, (request_id,))
            if (vote == PASS) == (verdict == TaskStatus.VALID)
        ]
        self.votes.clear(ctx, (request_id,))
        checker = task.checker if verdict == TaskStatus.VALID else b""
        self.tasks.set(ctx, request_id, dataclasses.replace(task, status=verdict, checker=checker))
        if verdict == TaskStatus.INVALID:
            self._catch(ctx, request_id, task)
        if task.reported:
            self._settle_report(ctx, request_id, task, verdict, winners)
        ctx.emit("verification_verdict", request_id=request_id.hex(), valid=str(verdict == TaskStatus.VALID).lower())

    def _catch(self, ctx: Context, request_id: bytes, task: Task) -> None:
        """An invalid answer: the developer gets its cost back, the executor is caught and starts over."""
        key = (task.cycle, task.executor)
        refund = min(int(task.cost), int(self.held.get(ctx, key)))
        self._escrows().pay_reward(ctx, task.executor, task.developer, refund)
        self._escrows().mark_refunded(ctx, request_id)
        self.held.set(ctx, key, int(self.held.get(ctx, key)) - refund)
        self.caught.add(ctx, key)
        self.reputation.set(ctx, task.executor, 0)
        ctx.emit("verification_caught", request_id=request_id.hex(), executor=encode_address(task.executor))

    def _settle_report(
        self, ctx: Context, request_id: bytes, task: Task, verdict: TaskStatus, winners: list[bytes]
    ) -> None:
        """A right report gets its fee back and half the bounty (the rest to the verifiers who found the answer
        invalid); a wrong one pays its fee to the verifiers who upheld the answer (or to the executor if none did).

        The bounty is what the caught executor forfeits beyond the refund, at most the task's cost: never more than
        honest work on the task would have earned, and never the refunded payment itself.
        """
        fee_id = self.report_escrows.id(request_id)
        fee = int(self.params.get(ctx).report_fee)
        if verdict == TaskStatus.INVALID:
            self.bank.release(ctx, NAME, fee_id, task.developer, fee)
            key = (task.cycle, task.executor)
            bounty = min(int(task.cost), int(self.held.get(ctx, key)))
            to_developer = bounty // 2 if winners else bounty
            self._pay_from_held(ctx, task, task.developer, to_developer)
            for voter, share in split_by_weight(
                bounty - to_developer, winners, lambda v: self.weight_share(ctx, task.cycle, v)[0]
            ):
                self._pay_from_held(ctx, task, voter, share)
            return
        recipients = winners or [task.executor]
        for voter, share in split_by_weight(fee, recipients, lambda v: self.weight_share(ctx, task.cycle, v)[0]):
            self.bank.release(ctx, NAME, fee_id, voter, share)

    def _pay_from_held(self, ctx: Context, task: Task, recipient: bytes, amount: int) -> None:
        if amount:
            key = (task.cycle, task.executor)
            self._escrows().pay_reward(ctx, task.executor, recipient, amount)
            self.held.set(ctx, key, int(self.held.get(ctx, key)) - amount)

    def close_disputes(self, ctx: Context) -> None:
        """Disputes whose window ends here and that no majority decided stay valid."""
        for _, request_id in self.deadlines.keys(ctx, (ctx.block.height,)):
            with isolated(ctx, NAME, f"dispute of {request_id.hex()}") as item:
                task = self._task(item, request_id)
                self._close_dispute(item, request_id, task, TaskStatus.VALID, decided=False)

    def settle(self, ctx: Context) -> None:
        """Release the held rewards of the cycle whose checks and disputes have all closed (see the docstring)."""
        schedule = self.race.schedule(ctx)
        params = self.params.get(ctx)
        boundary = ctx.block.height - params.check_blocks - params.dispute_blocks
        cycle = schedule.cycle(boundary) - 1
        if cycle < 0 or schedule.cycle_start(cycle + 1) != boundary:
            return
        for _, request_id in self.cycle_tasks.keys(ctx, (cycle,)):
            with isolated(ctx, NAME, f"settlement of task {request_id.hex()}") as item:
                self._settle_task(item, cycle, request_id)
        with isolated(ctx, NAME, "transaction fees") as item:
            self._share_fees(item, cycle)
        nodes = {node for (_, node), _ in self.held.items(ctx, (cycle,))}
        nodes |= {node for (_, node), _ in self.done.items(ctx, (cycle,))}
        nodes |= {node for (_, node), _ in self.misjudged.items(ctx, (cycle,))}
        nodes |= {node for (_, node), _ in self.routed.items(ctx, (cycle,))}
        pooled = 0
        for node in sorted(nodes):
            with isolated(ctx, NAME, f"settlement of {encode_address(node)}") as item:
                pooled += self._settle_node(item, params, cycle, node, pooled)
        self.owed_ppm.remove(ctx, cycle)
        self.cycle_weights.clear(ctx, (cycle,))
        self.cycle_totals.remove(ctx, cycle)

    def _share_fees(self, ctx: Context, cycle: int) -> None:
        """The transaction fees collected so far join the held rewards of the cycle's weight holders, by weight
        (so they are released, cut or forfeited by the same rules)."""
        fees = self.bank.balance(ctx, FEE_COLLECTOR)
        holders = [(node, int(w)) for (_, node), w in self.cycle_weights.items(ctx, (cycle,))]
        for node, share in split_by_weight(fees, [n for n, _ in holders], dict(holders).__getitem__):
            self._escrows().fund_reward(ctx, FEE_COLLECTOR, node, share)
            self._add(ctx, self.held, cycle, node, share)

    def _settle_task(self, ctx: Context, cycle: int, request_id: bytes) -> None:
        """A checked, valid task pays its checker its share out of the executor's held reward."""
        task = self._task(ctx, request_id)
        self.cycle_tasks.remove(ctx, (cycle, request_id))
        self.tasks.remove(ctx, request_id)
        self.checks.clear(ctx, (request_id,))
        if task.status not in (TaskStatus.CHECKED, TaskStatus.VALID) or not task.checker:
            return
        if self.caught.has(ctx, (cycle, task.executor)):
            return
        share = (int(task.cost) + int(task.subsidy)) * self.params.get(ctx).checker_share_percent // 100
        key = (cycle, task.executor)
        share = min(share, int(self.held.get(ctx, key)))
        self._escrows().move_reward(ctx, task.executor, task.checker, share)
        self.held.set(ctx, key, int(self.held.get(ctx, key)) - share)
        self._add(ctx, self.held, cycle, task.checker, share)

    def _settle_node(self, ctx: Context, params: Params, cycle: int, node: bytes, pooled: int) -> int:
        """Release (less the training fund's share, of all `pooled` releases so far and this one) or burn a node's
        held reward of the cycle; return what was released."""
        key = (cycle, node)
        held = int(self.held.get(ctx, key))
        caught = self.caught.has(ctx, key)
        numerator, denominator = (0, 1) if caught else self._release_fraction(ctx, params, cycle, node)
        released = held * numerator // denominator
        fund = self._issuer().training_share(ctx, pooled, released)
        if fund:
            self._escrows().pay_reward(ctx, node, TRAINING_FUND, fund)
        if released - fund:
            self._escrows().pay_reward(ctx, node, node, released - fund)
        if held - released:
            self._escrows().burn_reward(ctx, node, held - released)
        if not caught and self.finished.get(ctx, key):
            self.reputation.set(ctx, node, self.reputation.get(ctx, node) + 1)
        for counter in (self.held, self.routed, self.finished, self.done, self.misjudged):
            counter.remove(ctx, key)
        self.caught.remove(ctx, key)
        ctx.emit(
            "verification_release",
            node=encode_address(node),
            cycle=str(cycle),
            released=str(released),
            burned=str(held - released),
            training_fund=str(fund),
        )
        return released

    def _release_fraction(self, ctx: Context, params: Params, cycle: int, node: bytes) -> tuple[int, int]:
        """work share × check share, as one fraction; nothing for a node misjudged in the cycle."""
        key = (cycle, node)
        if self.misjudged.get(ctx, key):
            return 0, 1
        routed, finished = int(self.routed.get(ctx, key)), int(self.finished.get(ctx, key))
        work = (1, 1)
        if routed and 100 * finished < routed * params.min_work_percent:
            work = (100 * finished, routed * params.min_work_percent)
        weight, total = self.weight_share(ctx, cycle, node)
        owed = int(self.owed_ppm.get(ctx, cycle)) * weight // (total * PPM) if total else 0
        required = max(0, owed - params.shortfall_sigmas * math.isqrt(owed))
        done = int(self.done.get(ctx, key))
        checks = (1, 1) if done >= required else (done, required)
        return work[0] * checks[0], work[1] * checks[1]

    def check_held(self, ctx: Context) -> None:
        """What verification holds for a node over all cycles is exactly its inference reward escrow."""
        totals: dict[bytes, int] = {}
        for (_, node), amount in self.held.items(ctx):
            totals[node] = totals.get(node, 0) + int(amount)
        rewards = self._escrows()
        for node, total in totals.items():
            pending = rewards.pending_reward(ctx, node)
            if pending != total:
                raise InvariantBroken(f"{encode_address(node)} holds {total} in verification, {pending} in escrow")

    def check_reports(self, ctx: Context) -> None:
        """Every report fee is held for a task under re-verification that a report opened."""
        fee = int(self.params.get(ctx).report_fee)
        for escrow_id, amount in self.bank.module_escrows(ctx, NAME):
            request_id = self.report_escrows.parse(escrow_id)
            task = None if request_id is None else self.tasks.get(ctx, request_id)
            if task is None or not task.reported or task.status != TaskStatus.DISPUTED or amount != fee:
                raise InvariantBroken(f"verification escrow {escrow_id.hex()} ({amount}) is no open report's fee")

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """verification/UpdateParams: governance replaces the params, but not the check and dispute windows: a
        cycle settles when its last block is exactly `check_blocks + dispute_blocks` behind, so a new sum would
        skip a settlement and lock its rewards."""
        require_authority(ctx, "change verification params")
        old = self.params.get(ctx)
        if (msg.params.check_blocks, msg.params.dispute_blocks) != (old.check_blocks, old.dispute_blocks):
            raise ChainError(Code.INVALID_MESSAGE, "check_blocks and dispute_blocks are fixed at genesis")
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    def query_params(self, ctx: Context, _: None) -> Params:
        """The verification parameters."""
        return self.params.get(ctx)

    def query_reputation(self, ctx: Context, node: bytes) -> Reputation:
        """A node's reputation and the check probability of its tasks."""
        return Reputation(Address(node), int(self.reputation.get(ctx, node)), self.check_ppm(ctx, node))

    def query_task(self, ctx: Context, request_id: bytes) -> Task | None:
        """A finished task still open for checks or awaiting its cycle's settlement."""
        return self.tasks.get(ctx, request_id)

    def query_tasks(self, ctx: Context, validator: bytes) -> OpenTasks:
        """Every unsettled task with `validator`'s weight share in its cycle (for finding its duties)."""
        found = []
        for cycle, request_id in self.cycle_tasks.keys(ctx):
            task = self.tasks.get(ctx, request_id)
            if task is not None:
                weight, total = self.weight_share(ctx, cycle, validator)
                found.append(OpenTask(request_id, task, weight, total))
        return OpenTasks(tuple(found))

    def query_accounts(self, ctx: Context, node: bytes) -> Accounts:
        """A node's unsettled cycles: held rewards, work, checks, caught and misjudged."""
        cycles = sorted(
            {c for (c, n), _ in self.held.items(ctx) if n == node}
            | {c for (c, n), _ in self.done.items(ctx) if n == node}
        )
        found = []
        for cycle in cycles:
            key = (cycle, node)
            found.append(
                CycleAccount(
                    cycle=int(cycle),
                    held=Amount(self.held.get(ctx, key)),
                    routed=int(self.routed.get(ctx, key)),
                    finished=int(self.finished.get(ctx, key)),
                    checks_done=int(self.done.get(ctx, key)),
                    caught=self.caught.has(ctx, key),
                    misjudged=int(self.misjudged.get(ctx, key)),
                )
            )
        return Accounts(Address(node), tuple(found))


def split_by_weight(amount: int, recipients: list[bytes], weight: Callable[[bytes], int]) -> list[tuple[bytes, int]]:
    """Split `amount` among `recipients` in proportion to their weights (at least 1 each); the remainder of the
    integer division goes to the first in address order, so the parts always add up to `amount`."""
    if not recipients or amount <= 0:
        return []
    ordered = sorted(recipients)
    weights = [max(weight(r), 1) for r in ordered]
    parts = [amount * w // sum(weights) for w in weights]
    parts[0] += amount - sum(parts)
    return [(r, p) for r, p in zip(ordered, parts, strict=True) if p]


class VerificationModule(Module[Keeper, VerificationGenesis]):
    """Module wiring: check and re-verification messages, settlement hooks, queries and the held-rewards invariant."""

    name = NAME
    genesis_type = VerificationGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgCheck: Keeper.handle_check,
        MsgReverify: Keeper.handle_reverify,
        MsgReport: Keeper.handle_report,
        MsgUpdateParams: Keeper.handle_update_params,
    }
    queries: ClassVar[QueryTable] = {
        PARAMS: Keeper.query_params,
        REPUTATION: Keeper.query_reputation,
        TASK: Keeper.query_task,
        TASKS: Keeper.query_tasks,
        ACCOUNTS: Keeper.query_accounts,
    }

    def init_genesis(self, ctx: Context, state: VerificationGenesis) -> None:
        """Params and reputations."""
        self.keeper.params.set(ctx, state.params)
        for entry in state.reputations:
            self.keeper.reputation.set(ctx, entry.address, entry.reputation)

    def export_genesis(self, ctx: Context) -> VerificationGenesis:
        """Params and reputations (tasks in flight are not exported)."""
        k = self.keeper
        entries = tuple(ReputationEntry(Address(a), int(r)) for a, r in k.reputation.items(ctx))
        return VerificationGenesis(params=k.params.get(ctx), reputations=entries)

    def begin_block(self, ctx: Context) -> None:
        """Keep the weights of a cycle that starts here."""
        self.keeper.snapshot_weights(ctx)

    def end_block(self, ctx: Context) -> None:
        """Close undecided disputes whose window ended, then settle the cycle whose windows all closed."""
        self.keeper.close_disputes(ctx)
        self.keeper.settle(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """held: verification's held rewards equal the inference reward escrows; reports: fees back open reports."""
        return {"held": self.keeper.check_held, "reports": self.keeper.check_reports}
