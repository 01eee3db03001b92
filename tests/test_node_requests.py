"""Requests through a node's API, without sockets: transfer agent → executor → settlement on the real chain.

Three Race nodes serve a fake model; each has the daemon's transfer agent, executor and API. Developers
call node 1's API through FastAPI's test client, the agents forward to executors through a mock transport,
and everything on chain (escrow, payment, refunds, receipts) is the real App's state.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.modules import bank, inference
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.inference import (
    InferenceGenesis,
    ModelEntry,
    MsgAuthorizeKey,
    MsgRevokeKey,
    Receipt,
    ReceiptStatus,
    ServerEntry,
)
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.scalars import Amount
from racenet.crypto.keys import PrivateKey
from racenet.node.api import create_app
from racenet.node.compute import ComputeThread
from racenet.node.executor import Executor
from racenet.node.request_signing import signed_headers
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import TransferAgent, api_key_for
from tests.chain import CHAIN_ID, GENESIS_TIME, balances, key
from tests.nodefake import WORDS, Executors, FakeBackend, FakeChain, join_settlements, wait_until

MODEL = "fake-model"
NODES = [key(1), key(2), key(3)]
DEV, POOR, SESSION = key(50), key(51), key(52)
UNIT_PRICE, UNITS = 1_000, 2
PRICE = UNIT_PRICE * UNITS
MAX_TOKENS, EXPIRY = 64, 6
PROMPT = [{"role": "user", "content": "Name three colors."}]
PROMPT_TOKENS = 3


def host(i: int) -> str:
    """The host name node `i`'s executor is reached at."""
    return f"node{i}.test"


def genesis() -> Genesis:
    """Three serving Race nodes (weights 10:20:30), a funded developer and a developer with almost nothing."""
    weights = [10, 20, 30]
    nodes = tuple(
        RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
        for i, (k, w) in enumerate(zip(NODES, weights, strict=True))
    )
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(weights)],
        app_state=AppState(
            bank=BankGenesis(balances=(*balances([*NODES, DEV]), *balances([POOR], 5_000))),
            race=RaceGenesis(params=RaceParams(race_blocks=1_000), nodes=nodes),
            inference=InferenceGenesis(
                params=InferenceParams(unit_price=Amount(UNIT_PRICE), max_tokens=MAX_TOKENS, expiry_blocks=EXPIRY),
                models=(ModelEntry(MODEL, UNITS),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"http://{host(i)}") for i, k in enumerate(NODES)
                ),
            ),
        ),
    )


@dataclass
class Network:
    """The chain, the nodes' executor apps, and node 1's developer-facing API."""

    chain: FakeChain
    executors: Executors
    api: TestClient

    def receipt(self, request_id: bytes) -> Receipt | None:
        """The request's receipt on chain, if it is closed."""
        info = self.chain.client().query(inference.REQUEST, request_id)
        return None if info is None else info.receipt

    def settled(self, request_id: bytes) -> Receipt:
        """The request's receipt once its executor has finished it (blocks are produced meanwhile)."""
        receipt: Receipt = wait_until("the Finish", lambda: self.finished(request_id), self.chain)
        return receipt

    def finished(self, request_id: bytes) -> Receipt | None:
        """The request's receipt if its executor finished it."""
        receipt = self.receipt(request_id)
        return receipt if receipt is not None and receipt.status == ReceiptStatus.FINISHED else None

    def balance(self, who: PrivateKey) -> int:
        """A key's committed balance, through the RPC."""
        return self.chain.client().query(bank.BALANCE, who.public_key.address).amount

    def pending(self, address: bytes) -> int:
        """An executor's pending reward (`inference/pending`)."""
        return self.chain.client().query(inference.PENDING, address).amount

    def request_escrows(self) -> list[bytes]:
        """The ids of the inference module's request escrows (`req/…`) in the bank."""
        app = self.chain.node.app
        return [i for i, _ in app.bank.keeper.module_escrows(app.read_context(), "inference") if i.startswith(b"req/")]

    def executor_of(self, request_id: bytes, attempt: int = 0, tried: tuple[bytes, ...] = ()) -> bytes:
        """The executor the routing rule picks for a request started now."""
        app = self.chain.node.app
        return app.inference.keeper.executor_for(app.read_context(), request_id, MODEL, 0, attempt, tried)

    def post(self, body: dict[str, Any], headers: dict[str, str]) -> Any:
        """POST a chat completion to node 1's API with the given headers."""
        return self.api.post("/v1/chat/completions", content=json.dumps(body).encode(), headers=headers)

    def signed(self, body: dict[str, Any], signer: PrivateKey = DEV, request_id: bytes | None = None) -> Any:
        """POST a chat completion signed with `signer`'s account key."""
        raw = json.dumps(body).encode()
        headers = signed_headers(signer, CHAIN_ID, raw, request_id)
        return self.api.post("/v1/chat/completions", content=raw, headers=headers)


def build(tmp_path: Path, executor_backend: FakeBackend) -> Iterator[Network]:
    """The network with every executor on `executor_backend`; on teardown, settlements end before the chain closes."""
    chain = FakeChain(tmp_path / "chain", genesis())
    chain.block()
    executors, compute = Executors(), ComputeThread()
    apps = []
    for i, node_key in enumerate(NODES):
        client = chain.client()
        sender = TxSender(client, node_key)
        executor = Executor(executor_backend, client, sender, tmp_path / f"executor{i}", compute)
        agent = TransferAgent(client, sender, FakeBackend(MODEL), transport=executors.transport)
        apps.append(create_app(agent, executor))
        executors.add(host(i), apps[-1])
    yield Network(chain, executors, TestClient(apps[0]))
    join_settlements()
    chain.close()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """Three nodes whose models count tokens like the agent's."""
    yield from build(tmp_path, FakeBackend(MODEL))


def body(max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    """A chat completion request for the fake model."""
    return {"model": MODEL, "messages": PROMPT, "max_tokens": max_tokens, **extra}


def authorize_session(net: Network) -> str:
    """An API key for DEV's account, as `racenet api-key create` makes one."""
    TxSender(net.chain.client(), DEV).send([MsgAuthorizeKey(SESSION.public_key.raw, 10**12)])
    return api_key_for(SESSION.seed)


def test_api_key_request_pays_exactly_the_tokens_to_the_executor(net: Network) -> None:
    """A non-streaming request with an API key: the executor answers and settles; the developer pays
    (prompt + completion) × price, which becomes the executor's pending reward, and the escrow is gone."""
    token = authorize_session(net)
    before = net.balance(DEV)
    answer = net.post(body(), {"authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["choices"][0]["message"]["content"] == "".join(WORDS[:4])
    assert doc["usage"] == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 4, "total_tokens": 7}
    request_id = bytes.fromhex(doc["id"].removeprefix("chatcmpl-"))
    receipt = net.settled(request_id)
    cost = (PROMPT_TOKENS + 4) * PRICE
    assert (receipt.cost, receipt.completion_tokens) == (cost, 4)
    assert receipt.response_hash == hashlib.sha256("".join(WORDS[:4]).encode()).digest()
    assert net.balance(DEV) == before - cost, "the developer pays the tokens and nothing else"
    assert net.pending(receipt.executor) == cost
    assert net.request_escrows() == []


def test_streamed_signed_request_is_settled_the_same_way(net: Network) -> None:
    """A streamed request signed with the account key: SSE chunks with usage, then the same exact settlement."""
    before = net.balance(DEV)
    request_id = os.urandom(32)
    answer = net.signed(body(max_tokens=6, stream=True, stream_options={"include_usage": True}), request_id=request_id)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in answer.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "".join(WORDS)
    assert chunks[-1]["usage"]["total_tokens"] == PROMPT_TOKENS + 6
    receipt = net.settled(request_id)
    assert net.balance(DEV) == before - (PROMPT_TOKENS + 6) * PRICE == before - receipt.cost
    assert net.pending(receipt.executor) == receipt.cost
    assert net.request_escrows() == []


def test_a_dead_executor_is_reassigned_and_the_next_one_is_paid(net: Network) -> None:
    """The chosen executor refuses connections: the agent reassigns on chain and the next executor is paid."""
    request_id = os.urandom(32)
    first = net.executor_of(request_id)
    net.executors.down.add(host(next(i for i, k in enumerate(NODES) if k.public_key.address == first)))
    answer = net.signed(body(), request_id=request_id)
    assert answer.status_code == 200, answer.text
    second = net.executor_of(request_id, 1, (first,))
    receipt = net.settled(request_id)
    assert receipt.executor == second != first
    assert net.pending(second) == receipt.cost and net.pending(first) == 0
    assert net.request_escrows() == []


@pytest.mark.parametrize("stream", [False, True])
def test_no_executor_answering_is_503_and_the_escrow_comes_back_at_expiry(net: Network, stream: bool) -> None:
    """Every executor is down: 503 in OpenAI's shape (a stream too: no event has been sent yet), and the
    escrow is held until expiry, then refunded in full."""
    net.executors.down.update(host(i) for i in range(len(NODES)))
    before = net.balance(DEV)
    request_id = os.urandom(32)
    answer = net.signed(body(stream=stream), request_id=request_id)
    assert answer.status_code == 503
    assert answer.json()["error"] == {
        "message": answer.json()["error"]["message"],
        "type": "server_error",
        "param": None,
        "code": "no_executor",
    }
    assert net.request_escrows() != [], "escrowed until it expires"
    net.chain.until(net.chain.height() + EXPIRY + 1)
    receipt = net.receipt(request_id)
    assert receipt is not None and receipt.status == ReceiptStatus.EXPIRED
    assert net.balance(DEV) == before and net.request_escrows() == []


def test_an_executor_that_counts_the_prompt_otherwise_does_not_settle(tmp_path: Path) -> None:
    """The agent declares 3 prompt tokens; the executor's model reads 4: it refuses to be paid, and the
    developer gets everything back at expiry (nobody is charged more than its own model counted)."""
    for net in build(tmp_path, FakeBackend(MODEL, extra_prompt_tokens=1)):
        before = net.balance(DEV)
        request_id = os.urandom(32)
        answer = net.signed(body(), request_id=request_id)
        assert answer.status_code == 200 and answer.json()["usage"]["prompt_tokens"] == PROMPT_TOKENS + 1
        join_settlements(request_id)
        info = net.chain.client().query(inference.REQUEST, request_id)
        assert info is not None and info.request is not None, "the executor decided and left the request open"
        net.chain.until(net.chain.height() + EXPIRY + 1)
        receipt = net.receipt(request_id)
        assert receipt is not None and receipt.status == ReceiptStatus.EXPIRED
        assert net.balance(DEV) == before


def _tampered(net: Network, payload: dict[str, Any]) -> Any:
    """A signed request whose signature is replaced by zeros."""
    raw = json.dumps(payload).encode()
    headers = signed_headers(DEV, CHAIN_ID, raw)
    headers["x-racenet-signature"] = bytes(64).hex()
    return net.api.post("/v1/chat/completions", content=raw, headers=headers)


def _revoked(net: Network, payload: dict[str, Any]) -> Any:
    """A request with an API key its developer has revoked on chain."""
    token = authorize_session(net)
    TxSender(net.chain.client(), DEV).send([MsgRevokeKey(SESSION.public_key.raw)])
    return net.post(payload, {"authorization": f"Bearer {token}"})


@pytest.mark.parametrize(
    "case, status, code",
    [
        ("no credentials", 401, "missing_credentials"),
        ("API key of the wrong format", 401, "invalid_api_key"),
        ("unknown API key", 401, "invalid_api_key"),
        ("revoked API key", 401, "invalid_api_key"),
        ("signature that does not verify", 401, "invalid_signature"),
        ("unknown model", 404, "model_not_found"),
        ("max_tokens over the chain's limit", 400, None),
        ("developer who cannot pay the escrow", 402, "insufficient_quota"),
    ],
)
def test_rejected_requests_leave_no_escrow(net: Network, case: str, status: int, code: str | None) -> None:
    """Each way a request is refused before execution has its status and error code, and escrows nothing."""
    calls = {
        "no credentials": lambda: net.post(body(), {}),
        "API key of the wrong format": lambda: net.post(body(), {"authorization": "Bearer sk-not-ours"}),
        "unknown API key": lambda: net.post(body(), {"authorization": f"Bearer {api_key_for(os.urandom(32))}"}),
        "revoked API key": lambda: _revoked(net, body()),
        "signature that does not verify": lambda: _tampered(net, body()),
        "unknown model": lambda: net.signed({**body(), "model": "gpt-9"}),
        "max_tokens over the chain's limit": lambda: net.signed(body(max_tokens=MAX_TOKENS + 1)),
        "developer who cannot pay the escrow": lambda: net.signed(body(), signer=POOR),
    }
    answer = calls[case]()
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    net.chain.block()
    assert net.request_escrows() == []


def test_a_replayed_signed_request_is_refused(net: Network) -> None:
    """Sending the same signed request twice: 409 duplicate_request, and the developer pays once."""
    request_id = os.urandom(32)
    payload = json.dumps(body()).encode()
    headers = signed_headers(DEV, CHAIN_ID, payload, request_id)
    before = net.balance(DEV)
    assert net.api.post("/v1/chat/completions", content=payload, headers=headers).status_code == 200
    receipt = net.settled(request_id)
    replay = net.api.post("/v1/chat/completions", content=payload, headers=headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "duplicate_request")
    net.chain.block()
    assert net.request_escrows() == [] and net.balance(DEV) == before - receipt.cost


def test_the_executor_serves_only_forwards_signed_by_a_registered_node(net: Network) -> None:
    """A forward signed by a non-node is 403, one with a forged node signature 401."""
    executor = net.executors.apps[host(1)]
    forward = json.dumps({"request_id": "00" * 32, "start_tx": "00" * 32, "body": body()}).encode()
    outsider = {"x-racenet-public-key": DEV.public_key.raw.hex(), "x-racenet-signature": ""}
    outsider["x-racenet-signature"] = DEV.sign(hashlib.sha256(forward).digest()).hex()
    assert executor.post("/racenet/v1/execute", content=forward, headers=outsider).status_code == 403
    forged = {"x-racenet-public-key": NODES[0].public_key.raw.hex(), "x-racenet-signature": bytes(64).hex()}
    assert executor.post("/racenet/v1/execute", content=forward, headers=forged).status_code == 401
