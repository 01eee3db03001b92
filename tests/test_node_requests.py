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
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.scalars import Amount
from racenet.crypto.keys import PrivateKey
from racenet.node.api import create_app
from racenet.node.compute import ComputeThread
from racenet.node.executor import Executor, forward_headers
from racenet.node.limits import DEFAULT_LIMITS, Limits
from racenet.node.openai_format import parse_request
from racenet.node.request_signing import signed_headers
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import TransferAgent, new_api_key
from tests.chain import CHAIN_ID, GENESIS_TIME, balances, key
from tests.nodefake import WORDS, Executors, FakeBackend, FakeChain, join_settlements, wait_until

MODEL = "fake-model"
NODES = [key(1), key(2), key(3)]
DEV, POOR = key(50), key(51)
UNIT_PRICE, UNITS = 1_000, 2
PRICE = UNIT_PRICE * UNITS
MAX_TOKENS, EXPIRY = 64, 6
PROMPT = [{"role": "user", "content": "Name three colors."}]
PROMPT_TOKENS = 3
SUBSIDY_PER_FEE = 1
"""Phase 1 mints 1 nicoin of subsidy per nicoin of fee: the paper's 9, capped (tokenomics, docs/economics.md)."""


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
                params=InferenceParams(
                    max_tokens=MAX_TOKENS,
                    expiry_blocks=EXPIRY,
                    reassign_delay_blocks=1,  # blocks come only when a test asks: reassign at the next one
                    allow_private_endpoints=True,
                ),
                models=(ModelEntry(MODEL, UNITS),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"http://{host(i)}") for i, k in enumerate(NODES)
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(UNIT_PRICE)),
        ),
    )


@dataclass
class Network:
    """The chain, the nodes' executor apps, and node 1's developer-facing API."""

    chain: FakeChain
    executors: Executors
    api: TestClient
    agents: list[TransferAgent]
    executor_objects: list[Executor]

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

    def executor_of(self, request_id: bytes, attempt: int, tried: tuple[bytes, ...]) -> bytes:
        """The executor the routing rule picks for attempt `attempt` of a request node 1 (the transfer agent) opened."""
        app = self.chain.node.app
        ctx = app.read_context()
        receipt = app.inference.keeper.receipts.get(ctx, request_id)
        request = app.inference.keeper.requests.get(ctx, request_id)
        record = request or receipt
        assert record is not None
        route_round = record.route_round
        exclude = (*tried, NODES[0].public_key.address)
        return app.inference.keeper.executor_for(ctx, request_id, MODEL, route_round, attempt, exclude)

    def post(self, body: dict[str, Any], headers: dict[str, str]) -> Any:
        """POST a chat completion to node 1's API with the given headers."""
        return self.api.post("/v1/chat/completions", content=json.dumps(body).encode(), headers=headers)

    def signed(
        self,
        body: dict[str, Any],
        signer: PrivateKey = DEV,
        request_id: bytes | None = None,
        prompt_tokens: int = PROMPT_TOKENS,
        max_price: int = PRICE,
    ) -> Any:
        """POST a chat completion signed with `signer`'s account key, valid for 20 blocks."""
        raw = json.dumps(body).encode()
        headers = self.signed_headers(raw, signer, request_id, prompt_tokens, max_price)
        return self.api.post("/v1/chat/completions", content=raw, headers=headers)

    def signed_headers(
        self,
        raw: bytes,
        signer: PrivateKey = DEV,
        request_id: bytes | None = None,
        prompt_tokens: int = PROMPT_TOKENS,
        max_price: int = PRICE,
    ) -> dict[str, str]:
        """The headers that sign `raw` for `signer`, valid for 20 blocks."""
        expiry = self.chain.height() + 20
        return signed_headers(
            signer,
            CHAIN_ID,
            raw,
            transfer_agent=NODES[0].public_key.address,
            prompt_tokens=prompt_tokens,
            expiry_height=expiry,
            max_price_per_token=max_price,
            request_id=request_id,
        )


def build(tmp_path: Path, executor_backend: FakeBackend, limits: Limits = DEFAULT_LIMITS) -> Iterator[Network]:
    """The network with every executor on `executor_backend` and every API under `limits`; on teardown,
    settlements end before the chain closes."""
    chain = FakeChain(tmp_path / "chain", genesis())
    chain.until_beacon()
    executors, compute = Executors(), ComputeThread()
    apps, agents, executor_objects = [], [], []
    for i, node_key in enumerate(NODES):
        client = chain.client()
        sender = TxSender(client, node_key)
        executor = Executor(executor_backend, client, sender, tmp_path / f"executor{i}", compute)
        agent = TransferAgent(client, sender, FakeBackend(MODEL), transport=executors.transport)
        agents.append(agent)
        executor_objects.append(executor)
        apps.append(create_app(agent, executor, limits))
        executors.add(host(i), apps[-1])
    yield Network(chain, executors, TestClient(apps[0]), agents, executor_objects)
    join_settlements()
    chain.close()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """Three nodes whose models count tokens like the agent's."""
    yield from build(tmp_path, FakeBackend(MODEL))


def body(max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    """A chat completion request for the fake model."""
    return {"model": MODEL, "messages": PROMPT, "max_tokens": max_tokens, **extra}


def authorize_key(net: Network, gateway: PrivateKey = NODES[0]) -> tuple[str, bytes]:
    """An API key for DEV's account usable at `gateway`, as `racenet api-key create` makes one: (token, id)."""
    token, key_id = new_api_key()
    authorize = MsgAuthorizeKey(
        key_id=key_id, spend_limit=10**12, expiry_height=0, gateways=(gateway.public_key.address,)
    )
    TxSender(net.chain.client(), DEV).send([authorize])
    return token, key_id


def test_api_key_request_pays_exactly_the_tokens_to_the_executor(net: Network) -> None:
    """A non-streaming request with an API key: the executor answers and settles; the developer pays
    (prompt + completion) × price, which becomes the executor's pending reward, and the escrow is gone."""
    token, _ = authorize_key(net)
    before = net.balance(DEV)
    answer = net.post(body(), {"authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["choices"][0]["message"]["content"] == "".join(WORDS[:4])
    request_id = bytes.fromhex(doc["id"].removeprefix("chatcmpl-"))
    receipt = net.settled(request_id)
    cost = (PROMPT_TOKENS + 4) * PRICE
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 4, "total_tokens": 7}
    assert doc["usage"] == {**usage, "cost": cost, "cost_settled": True}
    assert (receipt.cost, receipt.completion_tokens) == (cost, 4)
    assert receipt.response_hash == hashlib.sha256("".join(WORDS[:4]).encode()).digest()
    assert net.balance(DEV) == before - cost, "the developer pays the tokens and nothing else"
    assert net.pending(receipt.executor) == cost + SUBSIDY_PER_FEE * cost, "the fee and the subsidy it mints"
    assert net.request_escrows() == []


@pytest.mark.parametrize(("max_tokens", "finish", "completion"), [(3, "length", 3), (10, "stop", len(WORDS))])
def test_the_escrow_is_the_max_cost_an_answer_that_reaches_it_stops_and_is_not_refunded(
    net: Network, max_tokens: int, finish: str, completion: int
) -> None:
    """The developer's max cost is the escrow, (prompt + max_tokens) × price (whitepaper §9): an answer that spends
    it stops there, says so as OpenAI does (`finish_reason` "length") and gets nothing back; one that ends before
    pays its tokens and the rest of the escrow comes back."""
    token, _ = authorize_key(net)
    before = net.balance(DEV)
    answer = net.post(body(max_tokens=max_tokens), {"authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["choices"][0]["finish_reason"] == finish
    receipt = net.settled(bytes.fromhex(doc["id"].removeprefix("chatcmpl-")))
    escrow = (PROMPT_TOKENS + max_tokens) * PRICE
    assert receipt.cost == (PROMPT_TOKENS + completion) * PRICE <= escrow
    assert net.balance(DEV) == before - receipt.cost
    assert (receipt.cost == escrow) == (finish == "length")


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
    assert net.pending(receipt.executor) == (1 + SUBSIDY_PER_FEE) * receipt.cost
    assert net.request_escrows() == []


def test_a_dead_executor_is_reassigned_and_the_next_one_is_paid(net: Network) -> None:
    """The chosen executor refuses connections: the agent reassigns on chain and the next executor is paid."""
    request_id = os.urandom(32)
    net.executors.refuse_next = True
    answer = net.signed(body(), request_id=request_id)
    assert answer.status_code == 200, answer.text
    (down,) = net.executors.down
    first = next(k.public_key.address for i, k in enumerate(NODES) if host(i) == down)
    second = net.executor_of(request_id, 1, (first,))
    receipt = net.settled(request_id)
    assert receipt.executor == second != first
    assert net.pending(second) == (1 + SUBSIDY_PER_FEE) * receipt.cost and net.pending(first) == 0
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


def test_an_executor_whose_model_counts_otherwise_refuses_before_generating(tmp_path: Path) -> None:
    """H1 (security review): the Start says 3 prompt tokens (as the developer signed); the executors' model reads 4.
    Each executor refuses the forward before it generates (nobody works for, or is paid at, a count the model
    did not read), the caller gets a 503, and the developer gets everything back at expiry."""
    for net in build(tmp_path, FakeBackend(MODEL, extra_prompt_tokens=1)):
        before = net.balance(DEV)
        request_id = os.urandom(32)
        answer = net.signed(body(), request_id=request_id)
        assert answer.status_code == 503, answer.text
        assert not any(e.executed(request_id) for e in net.executor_objects), "refused before generating"
        net.chain.until(net.chain.height() + EXPIRY + 1)
        receipt = net.receipt(request_id)
        assert receipt is not None and receipt.status == ReceiptStatus.EXPIRED
        assert net.balance(DEV) == before


def test_an_engine_that_cannot_replay_sampling_serves_greedy_requests_and_passes_sampled_ones_on(
    tmp_path: Path,
) -> None:
    """Node 2 serves through an engine with its own RNG (a stock llama.cpp or vLLM): its sampled answers would fail
    every check, so it declines a sampled request before generating and the agent moves it to node 3; a greedy one
    it serves."""
    for net in build(tmp_path, FakeBackend(MODEL)):
        stock, racenet = net.executor_objects[1], net.executor_objects[2]
        stock.backend = FakeBackend(MODEL, replays_sampling=False)
        declined = 0
        for n in range(12):
            request_id = os.urandom(32)
            answer = net.signed(body(temperature=0.7 if n % 2 else 1.0), request_id=request_id)
            assert answer.status_code == 200, answer.text
            assert net.settled(request_id).executor == NODES[2].public_key.address
            assert not stock.executed(request_id) and racenet.executed(request_id)
            declined += net.executor_of(request_id, 0, ()) == NODES[1].public_key.address
            if declined:
                break
        assert declined, "the chain routed a sampled request to node 2 first, and node 3 answered it"
        greedy = [os.urandom(32) for _ in range(6)]
        for request_id in greedy:
            assert net.signed(body(temperature=0), request_id=request_id).status_code == 200
        assert any(stock.executed(r) for r in greedy), "node 2 serves the greedy requests routed to it"


def test_a_request_signed_below_the_current_price_is_refused_before_any_escrow(net: Network) -> None:
    answer = net.signed(body(), max_price=PRICE - 1)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "price_above_signed")
    net.chain.block()
    assert net.request_escrows() == []


def test_a_signed_prompt_count_the_agent_reads_otherwise_is_refused_before_any_escrow(net: Network) -> None:
    """H1: a developer that signs 5 prompt tokens for a 3-token prompt gets a 400 from the transfer agent, and
    nothing is escrowed."""
    answer = net.signed(body(), prompt_tokens=PROMPT_TOKENS + 2)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "prompt_tokens_mismatch")
    net.chain.block()
    assert net.request_escrows() == []


def _tampered(net: Network, payload: dict[str, Any]) -> Any:
    """A signed request whose signature is replaced by zeros."""
    raw = json.dumps(payload).encode()
    headers = net.signed_headers(raw)
    headers["x-racenet-signature"] = bytes(64).hex()
    return net.api.post("/v1/chat/completions", content=raw, headers=headers)


def _revoked(net: Network, payload: dict[str, Any]) -> Any:
    """A request with an API key its developer has revoked on chain."""
    token, key_id = authorize_key(net)
    TxSender(net.chain.client(), DEV).send([MsgRevokeKey(key_id)])
    return net.post(payload, {"authorization": f"Bearer {token}"})


def _elsewhere(net: Network, payload: dict[str, Any]) -> Any:
    """A request with an API key whose only gateway is another node than the one called (H2)."""
    token, _ = authorize_key(net, gateway=NODES[1])
    return net.post(payload, {"authorization": f"Bearer {token}"})


@pytest.mark.parametrize(
    "case, status, code",
    [
        ("no credentials", 401, "missing_credentials"),
        ("API key of the wrong format", 401, "invalid_api_key"),
        ("unknown API key", 401, "invalid_api_key"),
        ("revoked API key", 401, "invalid_api_key"),
        ("API key of another gateway", 401, None),
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
        "unknown API key": lambda: net.post(body(), {"authorization": f"Bearer {new_api_key()[0]}"}),
        "revoked API key": lambda: _revoked(net, body()),
        "API key of another gateway": lambda: _elsewhere(net, body()),
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
    headers = net.signed_headers(payload, request_id=request_id)
    before = net.balance(DEV)
    assert net.api.post("/v1/chat/completions", content=payload, headers=headers).status_code == 200
    receipt = net.settled(request_id)
    replay = net.api.post("/v1/chat/completions", content=payload, headers=headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "duplicate_request")
    net.chain.block()
    assert net.request_escrows() == [] and net.balance(DEV) == before - receipt.cost


def _opened(net: Network, raw: bytes) -> tuple[bytes, bytes]:
    """Open a signed request on chain through node 1's agent without forwarding it: (request id, executor)."""
    agent = net.agents[0]
    request_id = os.urandom(32)
    headers = net.signed_headers(raw, request_id=request_id)
    _, generation, _ = parse_request(raw)
    opened = agent.open(raw, generation, headers)
    return opened.request_id, opened.executor


def test_the_executor_serves_only_committed_requests_forwarded_for_it_once(net: Network) -> None:
    """H3, M1, L8 (security review): on 480aad9 the executor ran any forward signed by any registered node, before
    the chain had the request, and replays too. Now a forward must be signed for this executor and chain, name a
    committed request routed to it by this transfer agent, carry the exact body the developer signed with the
    Start's max_tokens, and be new; every refusal comes before any generation."""
    raw = json.dumps(body()).encode()
    request_id, executor = _opened(net, raw)
    index = next(i for i, k in enumerate(NODES) if k.public_key.address == executor)
    app, agent_key = net.executors.apps[host(index)], NODES[0]

    def post(content: bytes, headers: dict[str, str]) -> int:
        return app.post("/racenet/v1/execute", content=content, headers=headers).status_code

    good = forward_headers(agent_key, CHAIN_ID, request_id, executor, raw)
    forged = {**good, "x-racenet-signature": bytes(64).hex()}
    other_chain = forward_headers(agent_key, "other-chain", request_id, executor, raw)
    not_the_agent = forward_headers(NODES[2 if index == 1 else 1], CHAIN_ID, request_id, executor, raw)
    unpaid = os.urandom(32)
    never_started = forward_headers(agent_key, CHAIN_ID, unpaid, executor, raw)
    longer = json.dumps(body(max_tokens=6)).encode()
    altered = json.dumps({**body(), "messages": [{"role": "user", "content": "Other words here."}]}).encode()
    assert post(raw, forged) == 401
    assert post(raw, other_chain) == 401, "the signature names the chain"
    assert post(raw, not_the_agent) == 403, "signed by a node that is not this request's transfer agent"
    assert post(raw, never_started) == 403, "nobody paid for this request id"
    assert post(longer, forward_headers(agent_key, CHAIN_ID, request_id, executor, longer)) == 409, "L8"
    assert post(altered, forward_headers(agent_key, CHAIN_ID, request_id, executor, altered)) == 409
    assert not net.executor_objects[index].executed(request_id), "nothing was generated for a refused forward"
    assert post(raw, good) == 200
    assert post(raw, good) in (403, 409), "a forward is served once (409; 403 once its Finish closed the request)"
    receipt = net.settled(request_id)
    assert receipt.executor == executor and receipt.completion_tokens == 4
