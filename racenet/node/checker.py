"""A validator's spot checks: find the tasks it owes a check of, fetch each answer, check it, report on chain.

Each poll reads the unsettled tasks (`verification/tasks`). For a task whose duty round is recorded, the
checker signs the task's duty message with the node's beacon key; if the signature's value makes it a duty
(`has_duty`), it fetches the request body and the answer from the executor (a fetch signed with the node key;
both must hash to what the chain recorded), checks it with the local model (`racenet.ml.check`) and sends
`verification/Check` with the signature as proof. For a disputed task it runs the same check and votes with
`verification/Reverify`. All model work runs on the node's compute thread.

An answer the executor refuses (a reachable executor's 404, a body or answer that does not match its hashes) fails:
no answer is not a pass. A fetch that fails for a reason that may pass or lie on this validator's side (a timeout, a
connection error, the executor busy, this node's own chain client) is `Unavailable`: never a verdict by itself, it
is retried at later polls, 1, 2, 4, ... blocks apart, while the check or dispute window leaves time for the
transaction (`VOTE_MARGIN_BLOCKS`). If the window closes on it, an executor silent at `MIN_SILENT_TRIES` tries or
more fails (it must serve its answers until they settle, or it could cheat and hide); fewer tries, or a cause on
this side, abstain: no check or vote is sent. So a transient fault cannot put an honest validator's vote on the
other side of its peers'. Disputes are looked at before owed checks, since their window is what a vote must meet.

Repeated small deviations pass each answer's own test, so the checker also keeps the results of the answers it
passed per executor and cycle, and fails the check that tips their total over the cycle's error-rate bound
(`cycle_failed`), naming as evidence the fewest of those answers, most misses first, that tip it. A re-verifier
judges the disputed answer alone and, if the dispute names evidence, together with exactly those answers: every
honest re-verifier then judges the same answers, whatever else each happened to check, and they agree.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from racenet.chain.modules import beacon, inference, race, verification
from racenet.chain.modules.verification import MAX_EVIDENCE, MsgCheck, MsgReverify, OpenTask, Task, TaskStatus
from racenet.crypto.keys import PrivateKey
from racenet.crypto.threshold import DUTY_DST, key_sign
from racenet.ml.check import Answer, CheckResult, Sampling, check_answer, cycle_failed
from racenet.ml.sampling import request_sampling_seed
from racenet.ml.transformers_backend import TransformersBackend
from racenet.node.client import ChainClient, ClientError
from racenet.node.compute import ComputeThread
from racenet.node.executor import answer_fetch_headers
from racenet.node.openai_format import ApiError, parse_request
from racenet.node.sender import TxSender

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 5.0
"""Well below a window's duration, so a silent executor is tried more than once within it."""
POLL_INTERVAL_S = 1.0
VOTE_MARGIN_BLOCKS = 3
"""Blocks left in a window for a check's or vote's transaction: no retry is scheduled later than this."""
MIN_SILENT_TRIES = 2
"""Failed fetches (a block or more apart) after which an executor's silence at the window's close is a FAIL."""
RETRY_STATUSES = frozenset({403, 408, 425, 429})
"""Statuses (besides 5xx) of an executor that may serve the answer later: busy, or refusing a holder of no weight
in the current cycle (it serves current weight holders only)."""


class Unavailable(Exception):
    """The answer could not be fetched this time, for a reason that may pass: retried, never a verdict alone."""

    def __init__(self, reason: str, *, ours: bool) -> None:
        super().__init__(reason)
        self.ours = ours
        """Whether the cause may be this validator's own (its chain client; a 403 while it holds no weight)."""


@dataclass(frozen=True)
class Retry:
    """A task's fetches that failed as `Unavailable` so far, and the height from which to try again."""

    tries: int
    next_height: int


@dataclass(frozen=True)
class Fetched:
    """A task's request body and the executor's answer, both matching the hashes on chain."""

    request_id: bytes
    body: bytes
    answer: Answer


class Checker:
    """Runs this validator's owed checks and its re-verification votes."""

    def __init__(
        self,
        client: ChainClient,
        sender: TxSender,
        backend: TransformersBackend,
        beacon_secret: int,
        compute: ComputeThread,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.client = client
        self.sender = sender
        self.backend = backend
        self.secret = beacon_secret
        self.compute = compute
        self.http = httpx.Client(timeout=FETCH_TIMEOUT_S, transport=transport)
        self.handled: set[tuple[bytes, TaskStatus]] = set()
        self.retries: dict[tuple[bytes, TaskStatus], Retry] = {}
        self.stop = threading.Event()
        self.results: dict[bytes, CheckResult | str] = {}
        """The latest finding per request id (a result, or why the answer could not be checked)."""
        self.passed: dict[tuple[int, bytes], dict[bytes, CheckResult]] = {}
        """Per (cycle, executor), the answers this validator checked that passed alone, by request id."""

    @property
    def key(self) -> PrivateKey:
        """The node key the checker signs fetches and messages with."""
        return self.sender.key

    def run(self) -> None:
        """Poll until stopped; a poll that fails (the chain or an executor unreachable) is retried next time."""
        while not self.stop.is_set():
            try:
                self.poll()
            except ClientError as e:
                log.warning("checker: %s", e)
            self.stop.wait(POLL_INTERVAL_S)

    def poll(self) -> None:
        """One pass over the unsettled tasks: disputes voted on first, then owed checks first come; a task whose
        chain query fails is tried again at the next poll."""
        me = self.key.public_key.address
        params = self.client.query(verification.PARAMS)
        height = self.client.height()
        tasks = self.client.query(verification.TASKS, me).tasks
        open_ids = {t.request_id for t in tasks}
        self.handled = {m for m in self.handled if m[0] in open_ids}
        self.retries = {m: r for m, r in self.retries.items() if m[0] in open_ids}
        self.results = {r: found for r, found in self.results.items() if r in open_ids}
        self.passed = {k: v for k, v in self.passed.items() if any(r in open_ids for r in v)}
        for open_task in sorted(tasks, key=lambda t: t.task.status != TaskStatus.DISPUTED):
            try:
                self._consider(open_task, height, params.check_blocks)
            except ClientError as e:
                log.warning("task %s: %s", open_task.request_id.hex(), e)

    def _consider(self, open_task: OpenTask, height: int, check_blocks: int) -> None:
        """Check the task if this validator owes it a check, or vote on it if it is disputed (once each)."""
        task = open_task.task
        stage = TaskStatus.DISPUTED if task.status == TaskStatus.DISPUTED else TaskStatus.OPEN
        marker = (open_task.request_id, stage)
        me = self.key.public_key.address
        if task.executor == me or marker in self.handled or task.status in (TaskStatus.VALID, TaskStatus.INVALID):
            return
        if task.status == TaskStatus.DISPUTED:
            self._reverify(open_task, height)
        elif height <= task.finish_height + check_blocks:
            proof = self._duty(open_task)
            if proof is not None:
                self._check(open_task, proof, height, task.finish_height + check_blocks)

    def _duty(self, open_task: OpenTask) -> bytes | None:
        """The duty proof if this validator owes the task a check, else None (also while its round is unknown)."""
        task = open_task.task
        round_ = self.client.query(beacon.ROUND, str(task.duty_round))
        if round_ is None:
            return None
        chain_id = self.sender.chain_id or self.client.chain_id()
        proof = key_sign(
            self.secret, DUTY_DST, verification.duty_message(chain_id, open_task.request_id, round_.output)
        )
        if not verification.has_duty(
            verification.duty_value(proof), task.check_ppm, open_task.weight, open_task.total_weight
        ):
            self.handled.add((open_task.request_id, TaskStatus.OPEN))
            return None
        return proof

    def _judge(
        self, open_task: OpenTask, stage: TaskStatus, height: int, closes: int, judge: Callable[[OpenTask], bool]
    ) -> bool | None:
        """`judge`'s verdict on the task for `stage` (its check, or its dispute's vote), once; None for no verdict
        yet (an `Unavailable` fetch, tried again while the window closing at height `closes` allows) or none at all
        (abstain: the window closed on fewer than `MIN_SILENT_TRIES` silent tries, or on a cause on this side)."""
        marker = (open_task.request_id, stage)
        retry = self.retries.get(marker)
        if retry is not None and height < retry.next_height:
            return None
        try:
            verdict = judge(open_task)
        except Unavailable as e:
            tries = 1 + (retry.tries if retry else 0)
            again = self.client.height() + 2 ** (tries - 1)
            if again + VOTE_MARGIN_BLOCKS <= closes:
                self.retries[marker] = Retry(tries, again)
                log.info("task %s unavailable (try %d, again at %d): %s", open_task.request_id.hex(), tries, again, e)
                return None
            self.handled.add(marker)
            if e.ours or tries < MIN_SILENT_TRIES:
                log.warning("task %s: no verdict, abstaining (%d tries): %s", open_task.request_id.hex(), tries, e)
                return None
            self.results[open_task.request_id] = f"unavailable at each of {tries} tries: {e}"
            log.warning("task %s: the executor served no answer in %d tries: %s", open_task.request_id.hex(), tries, e)
            return False
        self.handled.add(marker)
        return verdict

    def _check(self, open_task: OpenTask, proof: bytes, height: int, closes: int) -> None:
        evidence: tuple[bytes, ...] = ()
        passed = self._judge(open_task, TaskStatus.OPEN, height, closes, self.verdict)
        if passed is None:
            return
        if passed:
            found = self.evidence(open_task)
            passed = found is None
            evidence = found or ()
        self.sender.send([MsgCheck(open_task.request_id, proof, passed, evidence)])
        log.info("checked %s: %s", open_task.request_id.hex(), "pass" if passed else "FAIL")

    def _reverify(self, open_task: OpenTask, height: int) -> None:
        task = open_task.task
        valid = self._judge(open_task, TaskStatus.DISPUTED, height, task.dispute_deadline, self._valid)
        if valid is None:
            return
        log.info(
            "re-verified %s: %s (%s)",
            open_task.request_id.hex(),
            "valid" if valid else "INVALID",
            self.results.get(open_task.request_id),
        )
        try:
            self.sender.send([MsgReverify(open_task.request_id, valid)])
        except ClientError as e:
            log.info("re-verification of %s not counted: %s", open_task.request_id.hex(), e)

    def _valid(self, open_task: OpenTask) -> bool:
        """A disputed task's verdict: its answer passes alone and together with the dispute's evidence."""
        return self.verdict(open_task) and not self._evidence_fails(open_task)

    def _cycle_results(self, task: Task) -> dict[bytes, CheckResult]:
        return self.passed.setdefault((task.cycle, bytes(task.executor)), {})

    def evidence(self, open_task: OpenTask) -> tuple[bytes, ...] | None:
        """The fewest other passed answers of the executor's cycle, most misses first, that fail the cycle's
        error-rate bound together with this (passed) one; None if all of them together do not."""
        results = self._cycle_results(open_task.task)
        mine = results[open_task.request_id]
        others = sorted(
            ((r, res) for r, res in results.items() if r != open_task.request_id),
            key=lambda item: (-max(item[1].sample_misses, item[1].logprob_misses), item[0]),
        )[:MAX_EVIDENCE]
        chosen: list[CheckResult] = [mine]
        for n, (_, result) in enumerate(others):
            chosen.append(result)
            if cycle_failed(chosen):
                return tuple(r for r, _ in others[: n + 1])
        return None

    def _evidence_fails(self, open_task: OpenTask) -> bool:
        """Whether the disputed answer fails the cycle's bound together with the dispute's evidence; evidence the
        executor refuses, or that fails alone, fails it (an executor must serve its answers until they settle)."""
        evidence = open_task.task.evidence
        if not evidence:
            return False
        results = [self._cycle_results(open_task.task)[open_task.request_id]]
        for request_id in evidence:
            if not isinstance(self.results.get(request_id), CheckResult):
                try:
                    other = self.client.query(verification.TASK, request_id)
                except ClientError as e:
                    raise Unavailable(f"the chain: {e}", ours=True) from e
                if other is None:
                    return True
                self.verdict(OpenTask(request_id, other, open_task.weight, open_task.total_weight))
            result = self.results[request_id]
            if not isinstance(result, CheckResult) or not result.passed:
                return True
            results.append(result)
        return cycle_failed(results)

    def verdict(self, open_task: OpenTask) -> bool:
        """Whether the task's answer passes this validator's check alone: False when the executor refused it or
        served one that does not match the chain; `Unavailable` when it could not be fetched this time."""
        request_id = open_task.request_id
        known = self.results.get(request_id)
        if isinstance(known, CheckResult):
            return known.passed
        try:
            fetched = self.fetch(open_task)
            result = self.compute.run(self._run_check, fetched)
        except (ApiError, httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            self.results[request_id] = f"no checkable answer: {e}"
            log.warning("task %s has no checkable answer: %s", request_id.hex(), e)
            return False
        self.results[request_id] = result
        log.info("task %s: %s", request_id.hex(), describe(result))
        if result.passed:
            self._cycle_results(open_task.task)[request_id] = result
        return result.passed

    def fetch(self, open_task: OpenTask) -> Fetched:
        """The body and the answer from the task's executor; ValueError if either does not match the chain, or if
        the executor charged for more (or fewer) completion tokens than its answer has; httpx.HTTPStatusError if
        it refused the fetch; `Unavailable` if the chain or the executor could not answer this time."""
        request_id, task = open_task.request_id, open_task.task
        try:
            record = self.client.query(inference.REQUEST, request_id)
            receipt = None if record is None else record.receipt
            if receipt is None:
                raise ValueError("the request has no receipt")
            servers = self.client.query(inference.SERVERS, receipt.model).servers
            chain_id = self.sender.chain_id or self.client.chain_id()
        except ClientError as e:
            raise Unavailable(f"the chain: {e}", ours=True) from e
        endpoint = next((s.endpoint for s in servers if s.address == task.executor), "")
        if not endpoint:
            raise ValueError("the executor serves no endpoint")
        headers = answer_fetch_headers(self.key, chain_id, request_id, task.executor)
        try:
            response = self.http.get(f"{endpoint}/racenet/v1/answers/{request_id.hex()}", headers=headers)
        except httpx.TransportError as e:
            raise Unavailable(f"the executor at {endpoint}: {e!r}", ours=False) from e
        if response.status_code in RETRY_STATUSES or response.status_code >= 500:
            ours = response.status_code == 403 and not self._holds_weight()
            raise Unavailable(f"the executor answered {response.status_code}: {response.text[:200]}", ours=ours)
        response.raise_for_status()
        doc = response.json()
        body = base64.b64decode(doc["body"])
        raw = doc["answer"]
        answer = Answer(
            tuple(int(t) for t in raw["token_ids"]),
            tuple(float(x) for x in raw["logprobs"]),
            raw["finish_reason"],
            str(raw["text"]),
        )
        if hashlib.sha256(body).digest() != receipt.prompt_hash:
            raise ValueError("the body does not hash to the request's prompt hash")
        if hashlib.sha256(answer.text.encode()).digest() != receipt.response_hash:
            raise ValueError("the answer does not hash to the response hash the executor settled")
        if len(answer.token_ids) != receipt.completion_tokens:
            raise ValueError(
                f"the answer has {len(answer.token_ids)} tokens, the executor charged for {receipt.completion_tokens}"
            )
        return Fetched(request_id, body, answer)

    def _holds_weight(self) -> bool:
        """Whether this validator holds weight in the current cycle (executors serve answers to such nodes only)."""
        me = self.key.public_key.address
        try:
            return any(n.address == me and n.weight > 0 for n in self.client.query(race.NODES).nodes)
        except ClientError:
            return False

    def _run_check(self, fetched: Fetched) -> CheckResult:
        return recheck(self.backend, fetched)


def recheck(backend: TransformersBackend, fetched: Fetched) -> CheckResult:
    """A fetched answer re-scored by the model its request names: for an `ft:` name, the base with the adapter the
    chain recorded merged in. An adapter that cannot be had now is `Unavailable` (on this side), not a verdict."""
    _, generation, _ = parse_request(fetched.body)
    try:
        scorer = backend.for_model(generation.model)
    except ApiError as e:
        if e.status >= 500:
            raise Unavailable(f"the fine-tuned model's adapter: {e}", ours=True) from e
        raise
    prompt = scorer.tokenize_chat(generation.messages, model=generation.model)
    seed = request_sampling_seed(fetched.request_id, generation.seed)
    sampling = Sampling(generation.temperature, generation.top_p, seed, generation.max_tokens, generation.stop)
    return check_answer(scorer, prompt, sampling, fetched.answer)


def describe(result: CheckResult) -> str:
    """One line of a check's findings for the log."""
    verdict = "pass" if result.passed else f"FAIL ({result.failure}{': ' if result.detail else ''}{result.detail})"
    return (
        f"{verdict}; {result.positions} positions, {result.sample_misses} sample and {result.logprob_misses} logprob "
        f"misses of {result.allowed_misses} allowed, max logprob error {result.max_logprob_error:.3g}"
    )
