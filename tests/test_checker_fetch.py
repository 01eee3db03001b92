"""The checker's fetch: an answer counts only if its body, its text and its token count are the ones settled on chain.

An executor settles `completion_tokens` itself; one that charges the developer for more tokens than its answer has
(up to the signed max_tokens) fails the check, so the overcharge is refunded and the executor caught.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest

from racenet.chain.modules import inference
from racenet.chain.modules.inference import Receipt, ReceiptStatus, RequestInfo, ServerInfo, Servers
from racenet.chain.modules.verification import OpenTask, Task, TaskStatus
from racenet.chain.scalars import Address, Amount
from racenet.node.checker import Checker
from tests.chain import key

EXECUTOR = Address(key(2).public_key.address)
REQUEST_ID = b"\x09" * 32
BODY = json.dumps({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}).encode()
ANSWER = {"token_ids": [11, 12, 13], "logprobs": [-0.1, -0.2, -0.3], "finish_reason": "stop", "text": "abc"}


class Chain:
    """The chain client's answers about one settled request."""

    def __init__(self, completion_tokens: int) -> None:
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

    def query(self, spec: Any, arg: Any = None) -> Any:
        if spec is inference.REQUEST:
            return RequestInfo(None, self.receipt)
        if spec is inference.SERVERS:
            return Servers((ServerInfo(EXECUTOR, 1, "http://executor.test"),))
        raise AssertionError(f"unexpected query {spec}")


class Sender:
    key = key(1)
    chain_id = "test"


def executor(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"body": base64.b64encode(BODY).decode(), "answer": ANSWER})


def open_task() -> OpenTask:
    task = Task(EXECUTOR, Address(key(50).public_key.address), 0, 10, 11, 1_000_000, Amount(100), TaskStatus.OPEN)
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
