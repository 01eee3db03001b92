"""A validator's spot checks: find the tasks it owes a check of, fetch each answer, check it, report on chain.

Each poll reads the unsettled tasks (`verification/tasks`). For a task whose duty round is recorded, the
checker signs the task's duty message with the node's beacon key; if the signature's value makes it a duty
(`has_duty`), it fetches the request body and the answer from the executor (a fetch signed with the node key;
both must hash to what the chain recorded), checks it with the local model (`racenet.ml.check`) and sends
`verification/Check` with the signature as proof. For a disputed task it runs the same check and votes with
`verification/Reverify`. An answer that cannot be fetched, or does not match its hashes, fails: no answer is
not a pass. All model work runs on the node's compute thread.

Repeated small deviations pass each answer's own test, so the checker also keeps the results of the answers it
passed per executor and cycle, and fails the check that tips their total over the cycle's error-rate bound
(`cycle_failed`). A re-verifier of a task whose answer passes alone judges the same way: it checks up to
`CYCLE_SAMPLE` other answers of that executor in that cycle and votes invalid if, together, they fail.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from dataclasses import dataclass

import httpx

from racenet.chain.modules import beacon, inference, verification
from racenet.chain.modules.verification import MsgCheck, MsgReverify, OpenTask, TaskStatus
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

FETCH_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 1.0
CYCLE_SAMPLE = 8
"""Other answers of the same executor and cycle a re-verifier checks when the disputed one passes alone."""


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
        """One pass over the unsettled tasks: owed checks first come, disputes voted on."""
        me = self.key.public_key.address
        params = self.client.query(verification.PARAMS)
        height = self.client.height()
        tasks = self.client.query(verification.TASKS, me).tasks
        open_ids = {t.request_id for t in tasks}
        self.handled = {m for m in self.handled if m[0] in open_ids}
        self.passed = {k: v for k, v in self.passed.items() if any(r in open_ids for r in v)}
        for open_task in tasks:
            try:
                self._consider(open_task, height, params.check_blocks)
            except ClientError as e:
                self.handled.add((open_task.request_id, open_task.task.status))
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
            self.handled.add(marker)
            self._reverify(open_task)
        elif height <= task.finish_height + check_blocks:
            proof = self._duty(open_task)
            if proof is not None:
                self.handled.add(marker)
                self._check(open_task, proof)

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

    def _check(self, open_task: OpenTask, proof: bytes) -> None:
        passed = self.verdict(open_task) and not cycle_failed(list(self._cycle_results(open_task).values()))
        self.sender.send([MsgCheck(open_task.request_id, proof, passed)])
        log.info("checked %s: %s", open_task.request_id.hex(), "pass" if passed else "FAIL")

    def _reverify(self, open_task: OpenTask) -> None:
        valid = self.verdict(open_task) and not self._cycle_fails(open_task)
        try:
            self.sender.send([MsgReverify(open_task.request_id, valid)])
        except ClientError as e:
            log.info("re-verification of %s not counted: %s", open_task.request_id.hex(), e)

    def _cycle_results(self, open_task: OpenTask) -> dict[bytes, CheckResult]:
        return self.passed.setdefault((open_task.task.cycle, bytes(open_task.task.executor)), {})

    def _cycle_fails(self, open_task: OpenTask) -> bool:
        """Whether the executor's answers in the task's cycle, with up to CYCLE_SAMPLE more checked now, fail
        the error-rate bound together."""
        task = open_task.task
        me = self.key.public_key.address
        known = self._cycle_results(open_task)
        others = [
            t
            for t in self.client.query(verification.TASKS, me).tasks
            if t.task.executor == task.executor and t.task.cycle == task.cycle and t.request_id not in known
        ]
        for other in others[:CYCLE_SAMPLE]:
            self.verdict(other)
        return cycle_failed(list(known.values()))

    def verdict(self, open_task: OpenTask) -> bool:
        """Whether the task's answer passes this validator's check alone (False when it cannot be fetched)."""
        request_id = open_task.request_id
        try:
            fetched = self.fetch(open_task)
            result = self.compute.run(self._run_check, fetched)
        except (ClientError, ApiError, httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            self.results[request_id] = f"no checkable answer: {e}"
            log.warning("task %s has no checkable answer: %s", request_id.hex(), e)
            return False
        self.results[request_id] = result
        if result.passed:
            self._cycle_results(open_task)[request_id] = result
        return result.passed

    def fetch(self, open_task: OpenTask) -> Fetched:
        """The body and the answer from the task's executor; ValueError if either does not match the chain, or if
        the executor charged for more (or fewer) completion tokens than its answer has."""
        request_id, task = open_task.request_id, open_task.task
        record = self.client.query(inference.REQUEST, request_id)
        receipt = None if record is None else record.receipt
        if receipt is None:
            raise ValueError("the request has no receipt")
        servers = self.client.query(inference.SERVERS, receipt.model).servers
        endpoint = next((s.endpoint for s in servers if s.address == task.executor), "")
        if not endpoint:
            raise ValueError("the executor serves no endpoint")
        chain_id = self.sender.chain_id or self.client.chain_id()
        headers = answer_fetch_headers(self.key, chain_id, request_id, task.executor)
        response = self.http.get(f"{endpoint}/racenet/v1/answers/{request_id.hex()}", headers=headers)
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

    def _run_check(self, fetched: Fetched) -> CheckResult:
        _, generation, _ = parse_request(fetched.body)
        prompt = self.backend.tokenize_chat(generation.messages, model=generation.model)
        seed = request_sampling_seed(fetched.request_id, generation.seed)
        sampling = Sampling(generation.temperature, generation.top_p, seed, generation.max_tokens, generation.stop)
        return check_answer(self.backend, prompt, sampling, fetched.answer)
