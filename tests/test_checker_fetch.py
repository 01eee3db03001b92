"""The checker's fetch: an answer counts only if its body, its text and its token count are the ones settled on chain,
and a fetch that fails for a reason that may pass never becomes a vote by itself.

An executor settles `completion_tokens` itself; one that charges the developer for more tokens than its answer has
(up to the signed max_tokens) fails the check, so the overcharge is refunded and the executor caught.

Under load a fetch can time out, the executor can be busy, this node's own chain client can fail, and an executor
refuses (403) a validator that lost its weight this cycle: such a fetch is retried at later polls within the window,
and if the window closes on it the validator abstains, so an honest validator never votes against its peers for it.
An executor that stays silent at every try, or refuses a weight holder, or answers 404, still fails: it must serve
its answers until they settle.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest

from racenet.chain.modules import inference, race
from racenet.chain.modules.inference import Receipt, ReceiptStatus, RequestInfo, ServerInfo, Servers
from racenet.chain.modules.race import NodeInfo, Nodes
from racenet.chain.modules.verification import MsgCheck, MsgReverify, OpenTask, Task, TaskStatus
from racenet.chain.scalars import Address, Amount
from racenet.ml.check import CheckResult
from racenet.node.checker import VOTE_MARGIN_BLOCKS, Checker, Unavailable
from racenet.node.client import ClientError
from tests.chain import key

EXECUTOR = Address(key(2).public_key.address)
REQUEST_ID = b"\x09" * 32
BODY = json.dumps({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}).encode()
ANSWER = {"token_ids": [11, 12, 13], "logprobs": [-0.1, -0.2, -0.3], "finish_reason": "stop", "text": "abc"}


class Chain:
    """The chain client's answers about one settled request."""

    def __init__(self, completion_tokens: int = 3) -> None:
        self.at = 10
        self.weight = 1
        self.down = False
        self.receipt = Receipt(
            developer=Address(key(50).public_key.address),
            executor=EXECUTOR,
            route_round=1,
            model="m",
            prompt_tokens=5,
            completion_tokens=completion_tokens,
            prompt_hash=hashlib.sha256(BODY).digest(),
            response_hash=hashlib.sha256(b"abc").digest(),
            cost=Amount(100),
            height=10,
            status=ReceiptStatus.FINISHED,
            api_key_id=b"",
            key_number=0,
            prune_height=100,
        )

    def height(self) -> int:
        return self.at

    def query(self, spec: Any, arg: Any = None) -> Any:
        if self.down:
            raise ClientError("the node's RPC timed out")
        if spec is race.NODES:
            me = Address(Sender.key.public_key.address)
            node = NodeInfo(
                address=me, consensus_pub_key=b"", weight=self.weight, power=1, committed=None, last_outcome=None
            )
            return Nodes((node,))
        if spec is inference.REQUEST:
            return RequestInfo(None, self.receipt)
        if spec is inference.SERVERS:
            return Servers((ServerInfo(EXECUTOR, 1, "http://executor.test"),))
        raise AssertionError(f"unexpected query {spec}")


class Sender:
    key = key(1)
    chain_id = "test"

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msgs: list[Any]) -> None:
        self.sent.extend(msgs)


class Compute:
    """The compute thread, with a check every fetched answer passes."""

    def run(self, fn: Any, *args: Any) -> CheckResult:
        return CheckResult(3, 0, 0, 1, 0.0, "")


def executor(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"body": base64.b64encode(BODY).decode(), "answer": ANSWER})


def open_task(status: TaskStatus = TaskStatus.OPEN) -> OpenTask:
    task = Task(EXECUTOR, Address(key(50).public_key.address), 0, 10, 11, 1_000_000, Amount(100), status)
    return OpenTask(REQUEST_ID, task, 1, 2)


def checker(completion_tokens: int) -> Checker:
    return Checker(Chain(completion_tokens), Sender(), None, 1, None, transport=httpx.MockTransport(executor))  # type: ignore[arg-type]


def test_an_answer_with_the_settled_token_count_is_fetched() -> None:
    fetched = checker(3).fetch(open_task())
    assert fetched.body == BODY and fetched.answer.token_ids == (11, 12, 13)


@pytest.mark.parametrize("charged", [8, 2])
def test_an_executor_that_charged_for_other_than_its_answers_tokens_fails_the_check(charged: int) -> None:
    made = checker(charged)
    with pytest.raises(ValueError, match="charged for"):
        made.fetch(open_task())
    assert made.verdict(open_task()) is False
    assert "charged for" in str(made.results[REQUEST_ID])


DEADLINE = 30
"""The dispute's (or the check window's) last height in the tests below."""


class Executor:
    """An executor whose answers to successive fetches follow a script: a status, or an exception to raise (then
    it serves the answer)."""

    def __init__(self, *script: int | Exception) -> None:
        self.script = list(script)
        self.fetches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, Exception):
            raise step
        return executor(request) if step == 200 else httpx.Response(step, json={"error": {"message": "no"}})


def scripted(script: Executor) -> tuple[Checker, Chain, Sender]:
    chain, sender = Chain(), Sender()
    made = Checker(chain, sender, None, 1, Compute(), transport=httpx.MockTransport(script))  # type: ignore[arg-type]
    return made, chain, sender


def vote(made: Checker, chain: Chain, sender: Sender, last: int = DEADLINE) -> list[bool]:
    """Let the checker consider the disputed task at every height until `last`; the votes it sent."""
    task = open_task(TaskStatus.DISPUTED)
    disputed = OpenTask(task.request_id, Task(**{**task.task.__dict__, "dispute_deadline": DEADLINE}), 1, 2)
    for height in range(chain.at, last + 1):
        chain.at = height
        made._consider(disputed, height, 20)
    return [m.valid for m in sender.sent if isinstance(m, MsgReverify)]


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectTimeout("timed out"), httpx.ConnectError("connection refused"), 503, 429, 403],
    ids=["timeout", "refused connection", "busy", "rate limited", "not a weight holder"],
)
def test_a_fetch_that_failed_for_a_reason_that_may_pass_is_retried_and_the_vote_is_the_answers(
    failure: int | Exception,
) -> None:
    script = Executor(failure, failure)
    made, chain, sender = scripted(script)
    with pytest.raises(Unavailable):
        made.verdict(open_task())
    assert REQUEST_ID not in made.results, "no verdict was recorded"
    assert vote(made, chain, sender) == [True], "two failed fetches, then the answer: the vote is valid"
    assert script.fetches == 3


def test_a_validator_whose_own_chain_client_fails_abstains_when_the_window_closes() -> None:
    made, chain, sender = scripted(Executor())
    chain.down = True
    with pytest.raises(Unavailable) as raised:
        made.verdict(open_task())
    assert raised.value.ours
    chain.down = False
    made.client = Down(chain)  # type: ignore[assignment]
    assert vote(made, chain, sender) == [], "no vote: the fault may be its own"


class Down:
    """A chain client whose queries fail but whose height is known (the node's RPC overloaded)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def height(self) -> int:
        return self.chain.at

    def query(self, spec: Any, arg: Any = None) -> Any:
        raise ClientError("the node's RPC timed out")


def test_a_validator_that_holds_no_weight_now_abstains_when_the_executor_keeps_refusing_it() -> None:
    made, chain, sender = scripted(Executor(*[403] * 20))
    chain.weight = 0
    assert vote(made, chain, sender) == [], "an executor rightly serves current weight holders only"


@pytest.mark.parametrize(
    "silence",
    [httpx.ReadTimeout("timed out"), 503, 403],
    ids=["timeout", "busy", "refusing a weight holder"],
)
def test_an_executor_silent_at_every_try_of_the_window_fails(silence: int | Exception) -> None:
    script = Executor(*[silence] * 20)
    made, chain, sender = scripted(script)
    assert vote(made, chain, sender) == [False], "it must serve its answers until they settle"
    assert 2 <= script.fetches < 20, "tried more than once, and not again once it voted"
    assert "unavailable" in str(made.results[REQUEST_ID])


def test_an_owed_check_of_a_silent_executor_fails_at_the_close_of_its_window() -> None:
    made, chain, sender = scripted(Executor(*[httpx.ConnectTimeout("timed out")] * 20))
    made._duty = lambda _: b"proof"  # type: ignore[method-assign,assignment]
    for height in range(10, DEADLINE + 1):
        chain.at = height
        made._consider(open_task(), height, DEADLINE - open_task().task.finish_height)
    assert [m.passed for m in sender.sent if isinstance(m, MsgCheck)] == [False]


def test_a_dispute_seen_only_at_its_close_is_not_voted_on_after_one_failed_fetch() -> None:
    made, chain, sender = scripted(Executor(httpx.ConnectTimeout("timed out")))
    chain.at = DEADLINE - VOTE_MARGIN_BLOCKS
    assert vote(made, chain, sender) == [], "one failure is no silence: abstain"


@pytest.mark.parametrize("status", [404, 401])
def test_an_executor_that_refuses_a_signed_fetch_fails_at_once(status: int) -> None:
    script = Executor(status)
    made, chain, sender = scripted(script)
    assert vote(made, chain, sender) == [False]
    assert script.fetches == 1
