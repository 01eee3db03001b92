"""The explorer's pages on the in-process network of `tests.test_node_requests` (real chain, real transfer agent
and executors, fake model): real content from the chain, chain-derived text escaped, and error boxes instead of
tracebacks when the chain does not answer or an address is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from racenet.chain.modules.gov import MsgSubmitProposal
from racenet.chain.modules.race import NodeInfo, Outcome, OutcomeStatus
from racenet.chain.scalars import Amount
from racenet.crypto.address import encode_address
from racenet.explorer import data, explorer_router
from racenet.node.client import ChainClient
from racenet.node.sender import TxSender
from tests.nodefake import FakeBackend
from tests.test_node_requests import DEV, MODEL, NODES, Network, authorize_key, body, build
from tests.test_training_chain import create_msg

SCRIPT_TITLE = "<script>alert('title')</script>"
SCRIPT_MEMO = "<script>alert('memo')</script>"


@dataclass
class World:
    """The network, the request one chat completion opened, and the block of a hostile proposal."""

    net: Network
    request_id: str
    executor: str
    proposal_height: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for net in build(tmp_path_factory.mktemp("explorer"), FakeBackend(MODEL)):
        token, _ = authorize_key(net)
        reply = net.api.post("/v1/chat/completions", json=body(), headers={"authorization": f"Bearer {token}"})
        assert reply.status_code == 200, reply.text
        request_id = reply.headers["x-request-id"]
        receipt = net.settled(bytes.fromhex(request_id))
        proposal = MsgSubmitProposal(title=SCRIPT_TITLE, summary="<b>bold?</b>", messages=(), deposit=10**10)
        outcome = TxSender(net.chain.client(), DEV).send([proposal], memo=SCRIPT_MEMO)
        TxSender(net.chain.client(), DEV).send([create_msg()])  # training job 1
        yield World(net, request_id, encode_address(receipt.executor), outcome.height)


def get(world: World, path: str, status: int = 200) -> str:
    """A page's HTML, asserting its status."""
    response = world.net.api.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def test_root_redirects_to_the_overview_with_height_and_latest_blocks(world: World) -> None:
    assert world.net.api.get("/", follow_redirects=False).headers["location"] == "/explorer"
    page = get(world, "/explorer")
    height = world.net.chain.height()
    assert f'<span id="height" class="live">{height}</span>' in page
    assert "racenet-test" in page and 'id="latest-blocks"' in page
    assert f'href="/explorer/blocks/{height}"' in page
    assert "cycle 0" in page and "phase 1 of 12" in page


def test_live_endpoint_sends_the_height_and_latest_blocks(world: World) -> None:
    live = world.net.api.get("/explorer/api/live").json()
    assert live["height"] == world.net.chain.height() == live["blocks"][0]["height"]
    assert [b["height"] for b in live["blocks"]] == list(range(live["height"], live["height"] - 10, -1))
    assert "racenetLive" in get(world, "/explorer/race")  # every page polls it


def test_block_and_transaction_show_messages_with_memo_and_title_escaped(world: World) -> None:
    page = get(world, f"/explorer/blocks/{world.proposal_height}")
    assert f"block {world.proposal_height}" in page and "gov/SubmitProposal" in page
    assert encode_address(DEV.public_key.address) in page and ">ok<" in page
    assert "&lt;script&gt;alert(&#x27;memo&#x27;)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    row = next(r for r in page.split("<tr>") if "gov/SubmitProposal" in r)
    tx_hash = row.split('href="/explorer/txs/')[1].split('"')[0]
    tx = get(world, f"/explorer/txs/{tx_hash}")
    assert "gov/SubmitProposal" in tx and "&lt;script&gt;alert" in tx and "<script>alert" not in tx


def test_a_hostile_proposal_title_is_inert(world: World) -> None:
    for path in ("/explorer/gov", "/explorer/gov/1"):
        page = get(world, path)
        assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in page
        assert "<script>alert" not in page and "<b>bold" not in page
    assert "voting" in get(world, "/explorer/gov/1")


def test_the_request_page_shows_executor_cost_and_its_check(world: World) -> None:
    page = get(world, f"/explorer/requests/{world.request_id}")
    assert world.executor in page and MODEL in page and "finished" in page
    assert "3 prompt + 4 completion" in page and "check probability" in page and "100%" in page
    listed = get(world, "/explorer/requests")
    assert world.request_id[:16] in listed
    assert world.executor in get(world, f"/explorer/requests/lookup?id=chatcmpl-{world.request_id}")


def test_race_rewards_and_accounts_list_every_node(world: World) -> None:
    race = get(world, "/explorer/race")
    rewards = get(world, "/explorer/rewards")
    for node, weight in zip(NODES, (10, 20, 30), strict=True):
        address = encode_address(node.public_key.address)
        assert address in race and address in rewards
        assert f"<td>{weight}</td>" in race
    assert "claims in cycle 0" in race and "no tallied cycle yet" in race
    assert "serves no block results (the embedded engine)" in rewards
    account = get(world, f"/explorer/rewards/{world.executor}")
    assert "pay held per cycle" in account and "pending rewards" in account


def test_tokenomics_pricing_beacon_and_training(world: World) -> None:
    econ = get(world, "/explorer/tokenomics")
    assert "phase 1 of 12" in econ and "<svg" in econ and "paper (≤ 9 per fee)" in econ and "90.00%" in econ
    assert MODEL in get(world, "/explorer/pricing")
    assert "latest round" in get(world, "/explorer/beacon")
    assert "no such job" in get(world, "/explorer/training/7")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/explorer/blocks/abc", "invalid literal"),
        ("/explorer/requests/zz", "non-hexadecimal"),
        ("/explorer/rewards/race1nothing", "this page does not exist"),
        ("/explorer/blocks/999999", "the chain did not answer"),
    ],
)
def test_a_wrong_address_is_an_error_box(world: World, path: str, message: str) -> None:
    page = get(world, path, 503 if "did not answer" in message else 400)
    assert 'class="error"' in page and message in page and "Traceback" not in page


def test_an_unreachable_chain_is_an_error_box_not_a_traceback() -> None:
    app = FastAPI()
    app.include_router(explorer_router(ChainClient("http://127.0.0.1:9", timeout=1)))
    client = TestClient(app)
    for path in ("/explorer", "/explorer/race", "/explorer/tokenomics"):
        response = client.get(path)
        assert response.status_code == 503
        assert "the chain did not answer" in response.text and 'id="height" class="live">?<' in response.text
    assert client.get("/explorer/api/live").status_code == 503


def test_a_training_job_shows_this_nodes_loss_curve(world: World, tmp_path: Path) -> None:
    (tmp_path / "job1").mkdir()
    rows = [{"round": r, "train_loss": 3.0 / r, "seconds": 1.0} for r in (1, 2, 3)]
    (tmp_path / "job1" / "progress.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    app = FastAPI()
    app.include_router(explorer_router(world.net.chain.client(), tmp_path))
    client = TestClient(app)
    assert 'href="/explorer/training/1"' in client.get("/explorer/training").text
    page = client.get("/explorer/training/1").text
    assert "<svg" in page and "job 1: mean inner loss per round" in page and "participants" in page
    assert "this node trained no round" in get(world, "/explorer/training/1")  # the network's node trained none


def test_the_weight_history_keeps_each_nodes_weight_per_tallied_cycle() -> None:
    history = data.WeightHistory(max_cycles=2)
    for cycle, weight in ((1, 5), (2, 9), (2, 9), (3, 7)):
        outcome = Outcome(cycle=cycle, claimed=Amount(weight), weight=Amount(weight), status=OutcomeStatus.ACCEPTED)
        node = NodeInfo(
            address=b"\1" * 20, consensus_pub_key=b"", weight=weight, power=weight, committed=None, last_outcome=outcome
        )
        history.sample((node,))
    assert history.series() == {encode_address(b"\1" * 20): [(2, 9), (3, 7)]}
    assert data.losses(None, 1) == []


def test_released_rewards_are_read_from_cometbft_block_results() -> None:
    release = {"node": "race1x", "cycle": "4", "released": "800", "burned": "200", "training_fund": "200"}
    event = {"type": "verification_release", "attributes": [{"key": k, "value": v} for k, v in release.items()]}

    def answer(request: httpx.Request) -> httpx.Response:
        height = int(request.url.params["height"])
        if height < 8:
            return httpx.Response(200, json={"error": {"message": "height is pruned"}})
        events = [event] if height == 9 else [{"type": "other", "attributes": []}]
        return httpx.Response(200, json={"result": {"finalize_block_events": events}})

    client = ChainClient("http://chain.test", transport=httpx.MockTransport(answer))
    assert data.releases(client, 11) == [data.Release(9, "race1x", 4, 800, 200, 200)]
    assert data.releases(client, 8) is None
