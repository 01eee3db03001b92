"""A node's world without sockets: the real chain behind a mock RPC transport, executors behind mock HTTP.

`FakeChain` runs a real `App` in the embedded engine and answers CometBFT RPC calls made through
`httpx.MockTransport` exactly as `racenet start` serves them. When a client looks up a transaction
that is not in a block yet, it produces the next block first, so `wait_for_tx` returns at once and
the test decides when blocks happen; it counts the transactions broadcast. `Executors` routes a
transfer agent's forwards to the nodes' executor apps (FastAPI, through its test client) by host
name, and can make a node unreachable. `FakeBackend` is a deterministic stand-in for an LLM: a fixed
token stream with log-probabilities. `join_settlements` waits for executors' settlement threads, so a test
sees an executor's decision (settle or not) before it moves the chain on.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from racenet.chain.genesis import Genesis
from racenet.ml.backend import (
    ChatMessage,
    FinishEvent,
    GenerationEvent,
    GenerationRequest,
    TokenEvent,
    TokenScore,
    TopLogprob,
    Usage,
)
from racenet.node.client import ChainClient
from racenet.node.embedded import EmbeddedNode, RpcError
from racenet.node.executor import settlement_thread_name
from racenet.node.rpc_server import dispatch, dispatch_jsonrpc
from tests.chain import beacon_validators, with_beacon

CHAIN_URL = "http://chain.test"
WORDS = ("red", " green", " blue", " yellow", " black", " white")


class FakeChain:
    """The embedded engine over a real App, reachable only through `transport`."""

    def __init__(self, home: Path, genesis: Genesis) -> None:
        (home / "config").mkdir(parents=True)
        # blocks carry the wall clock: a genesis a year back would pay a day's minimum issuance at the first block
        genesis = with_beacon(dataclasses.replace(genesis, genesis_time=int(time.time())))
        genesis.save(home / "config" / "genesis.json")
        self.node = EmbeddedNode(home, validators=beacon_validators(genesis))
        self.transport = httpx.MockTransport(self.handle)
        self.broadcasts = 0
        self.held = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one RPC request as `racenet.node.rpc_server` would."""
        try:
            result = self._result(request)
        except RpcError as e:
            error = {"code": e.code, "message": "Internal error", "data": str(e)}
            return httpx.Response(500, json={"jsonrpc": "2.0", "id": -1, "error": error})
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": -1, "result": result})

    def _result(self, request: httpx.Request) -> Any:
        if request.method == "POST":
            self.broadcasts += 1
            return dispatch_jsonrpc(self.node, json.loads(request.content))
        params = dict(request.url.params)
        if request.url.path == "/abci_query" and "inference/request" in params.get("path", ""):
            self._route_pending()
        if request.url.path == "/tx":
            try:
                return dispatch(self.node, "/tx", params)
            except RpcError:
                if self.held:
                    raise
                self.node.produce_block()
        return dispatch(self.node, request.url.path, params)

    def _route_pending(self) -> None:
        """A transfer agent polls for its request's routing: let a block pass while any request is unrouted."""
        app = self.node.app
        if app.inference.keeper.unrouted.keys(app.read_context()):
            self.node.produce_block()

    def client(self) -> ChainClient:
        """A client of this chain."""
        return ChainClient(CHAIN_URL, transport=self.transport)

    def height(self) -> int:
        """The last committed height."""
        return self.node.app.height

    def block(self) -> None:
        """Produce the next block from the mempool."""
        self.node.produce_block()

    @contextmanager
    def holding_blocks(self) -> Iterator[None]:
        """While inside, waiting for a transaction makes no block: several senders' transactions can share one."""
        self.held = True
        try:
            yield
        finally:
            self.held = False

    def until_beacon(self) -> None:
        """Produce blocks until the beacon has recorded its first round (requests can be routed)."""
        while not self.node.app.beacon.keeper.latest.get(self.node.app.read_context()):
            self.node.produce_block()

    def until(self, height: int) -> None:
        """Produce blocks until `height` is committed."""
        while self.node.app.height < height:
            self.node.produce_block()

    def close(self) -> None:
        """Release the databases."""
        self.node.close()


class FakeBackend:
    """A deterministic model: the prompt is one token per word, the answer cycles through `WORDS`."""

    def __init__(self, model: str, extra_prompt_tokens: int = 0, replays_sampling: bool = True) -> None:
        self.model = model
        self.extra_prompt_tokens = extra_prompt_tokens
        self.replays_sampling = replays_sampling

    def models(self) -> list[str]:
        """The one model it serves."""
        return [self.model]

    def tokenize_chat(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> list[int]:
        """One token per word of every message, plus `extra_prompt_tokens` (a backend that counts otherwise)."""
        words = sum(len(m["content"].split()) for m in messages)
        return list(range(words + self.extra_prompt_tokens))

    def generate(self, request: GenerationRequest) -> Generator[GenerationEvent, None, None]:
        """`max_tokens` tokens (never more than 6), each with a logprob and one alternative."""
        prompt = len(self.tokenize_chat(request.messages))
        count = min(request.max_tokens, len(WORDS))
        for i in range(count):
            alternative = TopLogprob(token_id=100 + i, token="x", logprob=-3.0)
            yield TokenEvent(WORDS[i], i, WORDS[i], -0.5, (alternative,))
        yield FinishEvent("length" if count == request.max_tokens else "stop", Usage(prompt, count))

    def score(
        self, prompt_token_ids: Sequence[int], completion_token_ids: Sequence[int], *, model: str | None = None
    ) -> list[TokenScore]:
        """Every completion token at logprob -0.5, rank 1."""
        return [TokenScore(t, -0.5, 1) for t in completion_token_ids]


class Executors:
    """Forwards to `http://<host>/…` reach the executor app registered for that host, unless it is down."""

    def __init__(self) -> None:
        self.apps: dict[str, TestClient] = {}
        self.down: set[str] = set()
        self.refuse_next = False
        """Take down whichever executor is forwarded to next (the chain picks it, unpredictably)."""
        self.transport = httpx.MockTransport(self.handle)

    def add(self, host: str, app: FastAPI) -> None:
        """Serve `app` at `host`."""
        self.apps[host] = TestClient(app)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Pass a request to the host's app, or fail to connect like a dead node."""
        host = request.url.host
        if self.refuse_next and request.url.path.endswith("/execute"):
            self.refuse_next = False
            self.down.add(host)
        if host in self.down or host not in self.apps:
            raise httpx.ConnectError(f"{host} is unreachable", request=request)
        answer = self.apps[host].request(
            request.method, request.url.path, content=request.content, headers=dict(request.headers)
        )
        headers = {"content-type": answer.headers.get("content-type", "application/json")}
        return httpx.Response(answer.status_code, content=answer.content, headers=headers)


def wait_until(what: str, ready: Callable[[], Any], chain: FakeChain, timeout: float = 60.0) -> Any:
    """Produce blocks until `ready()` answers something truthy (work off the test's thread settles meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        chain.block()
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def join_settlements(request_id: bytes | None = None, timeout: float = 60.0) -> None:
    """Wait until the executors' settlement threads (of one request, or all) have finished."""
    prefix = settlement_thread_name(request_id.hex() if request_id is not None else "")
    for thread in threading.enumerate():
        if thread.name.startswith(prefix):
            thread.join(timeout)
            if thread.is_alive():
                raise AssertionError(f"{thread.name} did not finish")
