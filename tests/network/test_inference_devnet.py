"""The inference network on a 4-validator devnet: the official openai client against a node's API with
the new bearer API keys, escrow and payment on chain, OpenAI-shaped errors, re-routing around a dead
executor, an executor refusing a forward whose body differs from what the developer signed (and the
developer refunded), and 429s under a request flood while the chain goes on."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from racenet.chain.app_state import EXPORT
from racenet.chain.errors import Code
from racenet.chain.modules import bank, beacon, inference, race, tokenomics, verification
from racenet.chain.modules.bank import MsgSend
from racenet.chain.modules.inference import MsgServeModels, MsgStartRequest, Receipt, ReceiptStatus, choose_executor
from racenet.chain.modules.tokenomics.schedule import subsidy_per_fee
from racenet.cli.main import cli
from racenet.crypto.address import decode_address, encode_address
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.devnet import DEVNET_PASSPHRASE, Devnet
from racenet.ml.backend import Backend
from racenet.ml.transformers_backend import TransformersBackend
from racenet.node.client import ChainClient, ClientError, TxRejected
from racenet.node.executor import forward_headers
from racenet.node.request_signing import prompt_token_count, signed_headers
from racenet.node.sender import TxSender
from tests.network.conftest import running_devnet
from tests.network.netutil import wait_for

pytestmark = pytest.mark.network

MODEL = "SmolLM2-135M-Instruct"
PRICE = 1_000
DEV_FUNDS = 50 * 10**9


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_devnet(tmp_path_factory, "inference", "0.2,0.2,0.2,0.2") as directory:
        with ChainClient(Devnet.open(directory).state.nodes[0].rpc_url) as client:
            wait_for(
                "every node to serve the model",
                lambda: len(client.query(inference.SERVERS, MODEL).servers) == 4,
                timeout=240,
            )
        yield directory


@pytest.fixture(scope="module")
def net(net_dir: Path) -> Devnet:
    return Devnet.open(net_dir)


@pytest.fixture(scope="module")
def chain(net: Devnet) -> ChainClient:
    return ChainClient(net.state.nodes[0].rpc_url, timeout=10)


@pytest.fixture(scope="module")
def developer(net: Devnet, chain: ChainClient) -> PrivateKey:
    """A funded developer account (from the faucet)."""
    from racenet.crypto.keyring import Keyring
    from racenet.devnet import DEVNET_PASSPHRASE, FAUCET_KEY

    faucet = Keyring(net.state.dir / "keyring").load(FAUCET_KEY, DEVNET_PASSPHRASE)
    dev = PrivateKey(hashlib.sha256(b"developer").digest())
    TxSender(chain, faucet).send([MsgSend(dev.public_key.address, DEV_FUNDS)])
    return dev


def api_key(net: Devnet, chain: ChainClient, owner: PrivateKey, name: str) -> str:
    """Import `owner` into the devnet keyring as `name` and create an API key with the CLI."""
    from mnemonic import Mnemonic

    from racenet.crypto.keyring import Keyring

    keyring = Keyring(net.state.dir / "keyring")
    if name not in {k.name for k in keyring.list()}:
        keyring.import_mnemonic(name, Mnemonic("english").to_mnemonic(owner.seed), "")
    result = CliRunner(env={"RACENET_PASSPHRASE": ""}).invoke(
        cli,
        [
            "api-key",
            "create",
            "--home",
            str(net.state.dir),
            "--node",
            chain.url,
            "--from",
            name,
            "--gateway",
            net.state.nodes[0].api_url,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["api_key"])


def balance(chain: ChainClient, who: bytes) -> int:
    return chain.query(bank.BALANCE, who).amount


def finished(chain: ChainClient, request_id: str) -> Receipt | None:
    record = chain.query(inference.REQUEST, bytes.fromhex(request_id))
    receipt = None if record is None else record.receipt
    return receipt if receipt and receipt.status == ReceiptStatus.FINISHED else None


@pytest.fixture(scope="module")
def first_paid() -> dict[str, Any]:
    """The first test's finished requests and the training fund then, for the settlement test at the end."""
    return {}


def fund_now(chain: ChainClient) -> tuple[int, int]:
    """(the training fund's balance, the height it was read at), read between two equal heights."""
    while True:
        height = chain.height()
        fund = chain.query(tokenomics.STATUS).training_fund
        if chain.height() == height:
            return fund, height


def test_openai_client_non_streaming_and_streaming_pay_exactly_the_cost(
    net: Devnet, chain: ChainClient, developer: PrivateKey, first_paid: dict[str, Any]
) -> None:
    key = api_key(net, chain, developer, "dev")
    client = openai.OpenAI(base_url=net.state.nodes[0].api_url + "/v1", api_key=key, timeout=180, max_retries=0)
    before = balance(chain, developer.public_key.address)

    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a color."}], max_tokens=16
    )
    text = answer.choices[0].message.content or ""
    assert text.strip() and answer.usage is not None and answer.choices[0].finish_reason in ("stop", "length")
    first = answer.id.removeprefix("chatcmpl-")

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to three."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, stream_id = [], None, ""
    for chunk in stream:
        stream_id = chunk.id
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces).strip() and usage is not None
    second = stream_id.removeprefix("chatcmpl-")

    records = [wait_for("the executor's Finish", partial(finished, chain, r), timeout=60) for r in (first, second)]
    costs = [(answer.usage.total_tokens) * PRICE, usage.total_tokens * PRICE]
    assert [r.cost for r in records] == costs
    assert balance(chain, developer.public_key.address) == before - sum(costs)
    earned: dict[bytes, int] = {}
    for record in records:
        earned[record.executor] = earned.get(record.executor, 0) + record.cost
    per_fee = phase1_subsidy_per_fee(chain)
    for executor, amount in earned.items():
        # the fee and the subsidy tokenomics minted for it (phase 1: the paper's 9 × the fee, capped by the params)
        assert chain.query(inference.PENDING, executor).amount == (1 + per_fee) * amount, "the first requests paid"
    tasks = [chain.query(verification.TASK, bytes.fromhex(r)) for r in (first, second)]
    held = [t.subsidy if t else None for t in tasks]
    assert held == [per_fee * c for c in costs], "the subsidy is held beside the fee"
    first_paid.update(zip(("fund", "height"), fund_now(chain), strict=True), records=records, ids=[first, second])
    first_paid["cycles"] = {t.cycle for t in tasks if t}
    assert records[0].response_hash == hashlib.sha256(text.encode()).digest()


@pytest.fixture(scope="module")
def tokenizer() -> Backend:
    """The devnet model, to count a signed request's prompt tokens as the executors do."""
    return TransformersBackend.packaged(threads=1)


def phase1_subsidy_per_fee(chain: ChainClient) -> int:
    """The nicoin tokenomics mints per nicoin of fee in phase 1 under the chain's params (a whole number)."""
    rate = subsidy_per_fee(1, chain.query(tokenomics.PARAMS).max_subsidy_per_fee)
    assert rate.denominator == 1
    return rate.numerator


def signed_request(
    chain: ChainClient,
    tokenizer: Backend,
    dev: PrivateKey,
    body: dict[str, Any],
    request_id: bytes,
    agent: bytes,
    corrupt: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """A request `dev` signs for the node whose account is `agent`."""
    raw = json.dumps(body).encode()
    count = prompt_token_count(tokenizer, raw)
    expiry = chain.height() + 200
    headers = signed_headers(
        dev,
        chain.chain_id(),
        raw,
        transfer_agent=agent,
        prompt_tokens=count,
        expiry_height=expiry,
        max_price_per_token=PRICE,
        request_id=request_id,
    )
    if corrupt:
        headers["x-racenet-signature"] = bytes(64).hex()
    return raw, headers


def entry_with_spares(net: Devnet, chain: ChainClient) -> int | None:
    """A node to enter at such that, besides it, two serving nodes have weight (one to kill, one to reroute to)."""
    weighted = {s.address for s in chain.query(inference.SERVERS, MODEL).servers if s.weight > 0}
    for index, node in enumerate(net.state.nodes):
        if len(weighted - {decode_address(node.account)}) >= 2:
            return index
    return None


def serving(url: str) -> bool:
    """Whether a node's API answers its health check."""
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def post(net: Devnet, raw: bytes, headers: dict[str, str], node: int = 0) -> httpx.Response:
    return httpx.post(net.state.nodes[node].api_url + "/v1/chat/completions", content=raw, headers=headers, timeout=180)


def test_bad_requests_get_openai_errors_and_leave_no_escrow(
    net: Devnet, chain: ChainClient, developer: PrivateKey, tokenizer: Backend
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    key = api_key(net, chain, developer, "dev")
    bearer = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    node0 = decode_address(net.state.nodes[0].account)
    poor = PrivateKey(hashlib.sha256(b"poor developer").digest())
    cases = [
        (b"{not json", bearer, 400, "invalid_request_error"),
        (json.dumps({**body, "model": "gpt-9"}).encode(), bearer, 404, "invalid_request_error"),
        (json.dumps({**body, "max_tokens": 100_000}).encode(), bearer, 400, "invalid_request_error"),
        (
            *signed_request(chain, tokenizer, developer, body, os.urandom(32), node0, corrupt=True),
            401,
            "authentication_error",
        ),
        (*signed_request(chain, tokenizer, poor, body, os.urandom(32), node0), 402, "insufficient_quota"),
        (json.dumps(body).encode(), {"content-type": "application/json"}, 401, "authentication_error"),
    ]
    for raw, headers, status, error_type in cases:
        response = post(net, raw, headers)
        assert response.status_code == status, response.text
        assert response.json()["error"]["type"] == error_type

    request_id = os.urandom(32)
    raw, headers = signed_request(chain, tokenizer, developer, body, request_id, node0)
    assert post(net, raw, headers).status_code == 200
    replay = post(net, raw, headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "duplicate_request")
    wait_for("the first request to settle", lambda: finished(chain, request_id.hex()), timeout=60)
    assert [e for e in chain.query(EXPORT).bank.escrows if e.id.startswith(b"req/")] == []


def route_draws(
    output: bytes, request_id: bytes, weights: list[tuple[bytes, int]], agent: bytes, attempts: int
) -> list[bytes]:
    """The executors of a request's attempts in turn, recomputed from the routing round's output: each attempt's
    draw excludes the transfer agent and every earlier executor."""
    draws: list[bytes] = []
    for attempt in range(attempts):
        chosen = choose_executor(output, request_id, attempt, weights, (agent, *draws))
        if chosen is None:
            break
        draws.append(chosen)
    return draws


def first_draw(chain: ChainClient, request_id: bytes, agent: bytes) -> bytes | None:
    """The executor an opened request was first drawn for, recomputed from chain data; None if it was not opened."""
    record = chain.query(inference.REQUEST, request_id)
    if record is None or record.request is None:
        return None
    drawn = chain.query(beacon.ROUND, str(record.request.route_round))
    if drawn is None:
        return None
    weights = [(s.address, s.weight) for s in chain.query(inference.SERVERS, record.request.model).servers]
    draws = route_draws(drawn.output, request_id, weights, agent, 1)
    return draws[0] if draws else None


def test_dead_executor_is_routed_around(
    net: Devnet, chain: ChainClient, developer: PrivateKey, tokenizer: Backend
) -> None:
    """A weighted executor's endpoint refuses connections (it re-announced a dead port; its daemon races on,
    so it keeps its weight). The chain draws each request's executor from a beacon round signed after the
    Start, so nobody can aim a request at it: requests go out until one was drawn for the dead endpoint, and
    that one is rerouted and paid to a live executor. Each first draw is recomputed from chain data alone
    (the receipt's beacon round, its output, the servers' weights). A 503 is accepted only for a request first
    drawn for a live executor (slowed by load)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4}
    entry = wait_for(
        "two weighted executors besides the entry node", partial(entry_with_spares, net, chain), timeout=180
    )
    agent = decode_address(net.state.nodes[entry].account)
    servers = {s.address: s for s in chain.query(inference.SERVERS, MODEL).servers}
    index, victim = next(
        (i, n) for i, n in enumerate(net.state.nodes) if i != entry and servers[decode_address(n.account)].weight > 0
    )
    victim_key = Keyring(net.state.dir / "keyring").load(f"node{index + 1}", DEVNET_PASSPHRASE)
    endpoint = servers[victim_key.public_key.address].endpoint
    sender = TxSender(chain, victim_key)
    announce(sender, "http://127.0.0.1:9/racenet")  # the discard port: refused
    try:
        drawn_for_victim = 0
        for _ in range(16):
            request_id = os.urandom(32)
            raw, headers = signed_request(chain, tokenizer, developer, body, request_id, agent)
            response = post(net, raw, headers, node=entry)
            if response.status_code == 503 and first_draw(chain, request_id, agent) != victim_key.public_key.address:
                continue  # a live executor slowed by load did not answer in time: expired later, and refunded
            assert response.status_code == 200, response.text
            record = wait_for("the request to settle", partial(finished, chain, request_id.hex()), timeout=90)
            assert encode_address(record.executor) != victim.account
            drawn = chain.query(beacon.ROUND, str(record.route_round))
            assert drawn is not None
            cycle = chain.query(race.CYCLE)
            if record.height - 2 < cycle.phase_starts[race.Phase.RACE]:
                continue  # a tally may have changed the weights since the draw: recompute on the next request
            weights = [(s.address, s.weight) for s in chain.query(inference.SERVERS, MODEL).servers]
            draws = route_draws(drawn.output, request_id, weights, agent, chain.query(inference.PARAMS).max_attempts)
            if draws[0] == victim_key.public_key.address:
                drawn_for_victim += 1
                break
            # a live executor slowed by load may be reassigned too: then a later draw of the same rule executed it
            assert record.executor in draws, "a draw recomputed from chain data executed it"
        assert drawn_for_victim, "no request was drawn for the dead endpoint in 16 tries"
    finally:
        announce(sender, endpoint)


def announce(sender: TxSender, endpoint: str) -> None:
    """Re-announce the node's endpoint with its own key, which its daemon also signs with: a transaction of the
    daemon's in the mempool may hold the sequence the chain's state shows (`wrong_sequence`, which names the
    sequence CheckTx expects: the next try uses that one), or take it while ours waits (ours never commits)."""
    for _ in range(10):
        try:
            sender.send([MsgServeModels((MODEL,), endpoint)])
            return
        except TxRejected as e:
            expected = re.search(r"expected (\d+)", e.log)
            if e.code != Code.WRONG_SEQUENCE or expected is None:
                raise
            sender.next_sequence = int(expected.group(1))
            time.sleep(0.5)
        except ClientError:  # admitted, then dropped from the mempool: the daemon's transaction took its sequence
            sender.next_sequence = None
    raise AssertionError("the endpoint was never re-announced: the daemon kept taking the sequence")


def test_a_forward_whose_body_differs_from_the_signed_one_is_refused_and_refunded(
    net: Devnet, chain: ChainClient, tokenizer: Backend
) -> None:
    """H1/H3/L8 on the devnet: a transfer agent (here the test, with its own funded account) opens a request the
    developer signed, then forwards a different body, or the same body with more max_tokens, to the executor the
    chain drew. The executor refuses both before generating; nobody finishes the request, and at expiry the
    developer is refunded in full. The developer is its own (an earlier test's late refund would move the shared
    developer's balance)."""
    from racenet.crypto.keyring import Keyring
    from racenet.devnet import DEVNET_PASSPHRASE, FAUCET_KEY

    faucet = Keyring(net.state.dir / "keyring").load(FAUCET_KEY, DEVNET_PASSPHRASE)
    agent = PrivateKey(hashlib.sha256(b"a transfer agent that lies").digest())
    developer = PrivateKey(hashlib.sha256(b"a developer whose forward was forged").digest())
    TxSender(chain, faucet).send(
        [MsgSend(agent.public_key.address, 10**9), MsgSend(developer.public_key.address, DEV_FUNDS)]
    )
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}
    request_id = os.urandom(32)
    raw, headers = signed_request(chain, tokenizer, developer, body, request_id, agent.public_key.address)
    before = balance(chain, developer.public_key.address)
    start = MsgStartRequest(
        request_id=request_id,
        developer=developer.public_key.address,
        model=MODEL,
        prompt_tokens=int(headers["x-racenet-prompt-tokens"]),
        max_tokens=4,
        max_price_per_token=PRICE,
        prompt_hash=hashlib.sha256(raw).digest(),
        expiry_height=int(headers["x-racenet-expiry-height"]),
        signer_key=developer.public_key.raw,
        signature=bytes.fromhex(headers["x-racenet-signature"]),
        api_key_id=b"",
    )
    TxSender(chain, agent).send([start])

    def routed() -> inference.RequestInfo | None:
        found = chain.query(inference.REQUEST, request_id)
        return found if found is not None and found.request is not None and found.request.executor else None

    record = wait_for("the chain to route the request (its beacon round)", routed, timeout=30)
    assert record.request is not None
    executor = record.request.executor
    endpoint = next(s.endpoint for s in chain.query(inference.SERVERS, MODEL).servers if s.address == executor)
    escrow = record.request.escrow
    assert balance(chain, developer.public_key.address) == before - escrow
    wait_for("the executor's API (restarted by the previous test)", partial(serving, endpoint), timeout=120)
    other = json.dumps({**body, "messages": [{"role": "user", "content": "Write a long essay."}]}).encode()
    longer = json.dumps({**body, "max_tokens": 64}).encode()
    for forged in (other, longer):
        forward = forward_headers(agent, chain.chain_id(), request_id, executor, forged)
        answer = httpx.post(endpoint + "/racenet/v1/execute", content=forged, headers=forward, timeout=60)
        assert (answer.status_code, answer.json()["error"]["code"]) == (409, "body_mismatch"), answer.text
    expiry = record.request.expiry_height
    wait_for("the request to expire", lambda: chain.height() > expiry, timeout=120)
    closed = chain.query(inference.REQUEST, request_id)
    assert closed is not None and closed.receipt is not None and closed.receipt.status == ReceiptStatus.EXPIRED
    assert balance(chain, developer.public_key.address) == before, "refunded in full"


def test_a_request_flood_gets_429_and_the_chain_goes_on(net: Devnet, chain: ChainClient, developer: PrivateKey) -> None:
    """M9/H6 on the devnet: one API key floods a node's API. Past its burst the node answers 429 with Retry-After
    (the official openai client raises RateLimitError), before any chain work, and blocks keep coming."""
    key = api_key(net, chain, developer, "dev")
    start = chain.height()
    bearer = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    url = net.state.nodes[0].api_url + "/v1/chat/completions"
    with httpx.Client(timeout=30) as http:
        statuses = [http.post(url, content=b"{}", headers=bearer) for _ in range(60)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limit_exceeded"
    client = openai.OpenAI(base_url=net.state.nodes[0].api_url + "/v1", api_key=key, timeout=30, max_retries=0)
    raised: list[type[Exception]] = []
    for _ in range(60):
        try:
            client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        except openai.APIStatusError as e:
            raised.append(type(e))
            if isinstance(e, openai.RateLimitError):
                break
    assert raised[-1] is openai.RateLimitError, raised
    wait_for("more blocks", lambda: chain.height() >= start + 5, timeout=60)


def test_providers_receive_fees_plus_subsidy_at_a_cycle_end_and_the_training_fund_gets_20_percent(
    chain: ChainClient, first_paid: dict[str, Any]
) -> None:
    """Issue 13 on the devnet: the first requests' cycle settles (by now, after the other tests); each settlement
    releases fees and subsidy to the providers and pays the training fund 20% of what it releases, to the nicoin."""
    if not first_paid:
        pytest.skip("the first test did not pay its requests")
    ids = [bytes.fromhex(r) for r in first_paid["ids"]]
    wait_for(
        "the first requests' cycle to settle",
        lambda: all(chain.query(verification.TASK, r) is None for r in ids),
        timeout=120,
    )
    fund, height = fund_now(chain)
    settlements: dict[int, tuple[int, int]] = {}  # height → (released, to the fund)
    executors = {r.executor for r in first_paid["records"]}
    settled, to_executors = 0, 0
    for h in range(first_paid["height"] + 1, height + 1):
        for event in chain.call("block_results", height=str(h)).get("finalize_block_events") or []:
            if event["type"] != "verification_release":
                continue
            attributes = {a["key"]: a["value"] for a in event.get("attributes") or []}
            released, funded = settlements.get(h, (0, 0))
            settlements[h] = (released + int(attributes["released"]), funded + int(attributes["training_fund"]))
            if int(attributes["cycle"]) in first_paid["cycles"]:
                settled += int(attributes["released"]) + int(attributes["burned"])
                if decode_address(attributes["node"]) in executors:
                    to_executors += int(attributes["released"])
    assert settlements, "no settlement between the first requests and now"
    assert fund - first_paid["fund"] == sum(funded for _, funded in settlements.values())
    for released, funded in settlements.values():
        assert funded == released * 20 // 100  # 20% of each settlement's released revenue, rounded down once
    fees = sum(r.cost for r in first_paid["records"])
    per_fee = phase1_subsidy_per_fee(chain)
    assert settled >= (1 + per_fee) * fees, "the cycle settled every nicoin of the fees and of their subsidy"
    assert to_executors > 0, "the executors were paid at the cycle end"
