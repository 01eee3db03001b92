"""A real 4-validator CometBFT devnet on 127.0.0.1: consensus, propagation, rejections, validator
updates, crash recovery, restart, and the supply invariant.

All tests share one devnet (see conftest); every wait is for a condition, with a generous deadline.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from racenet.chain.app_state import EXPORT
from racenet.chain.codec import encode
from racenet.chain.errors import Code
from racenet.chain.modules import bank, validators
from racenet.chain.modules.auth import Params as AuthParams
from racenet.chain.modules.bank import MsgSend
from racenet.chain.tx import TX_VERSION, AnyMsg, SignedTx, TxBody, build_tx, sign_bytes, tx_hash
from racenet.cli.common import TABLE_WIDTH
from racenet.cli.devnet import devnet
from racenet.crypto.keys import PrivateKey
from racenet.devnet import CHAIN_ID, Devnet
from racenet.devnet.network import VALIDATOR_POWER
from racenet.devnet.state import KINDS
from racenet.node.client import ChainClient, ClientError
from racenet.node.sender import TxSender
from tests.network.netutil import (
    app_hash_after,
    broadcast_raw,
    header_app_hash,
    mempool_hashes,
    query_with_height,
    validator_powers,
    wait_for,
    wait_height,
)

pytestmark = pytest.mark.network

FEE = bank.Params().required_fee(1024, [0])
AMOUNT = 123_456_789
SAMPLE_EVERY_S = 0.2
MIN_SAMPLED_HEIGHTS = 10


class SupplySampler(threading.Thread):
    """Checks supply == balances + escrows at every height it sees, on all nodes in turn, in the background.

    Both queries of a sample must be answered at the same height (the App reports it), so a
    block committed between them cannot produce a false alarm.
    """

    def __init__(self, clients: list[ChainClient]) -> None:
        """Sample through these clients (owned by the sampler)."""
        super().__init__(daemon=True)
        self.clients = clients
        self.samples: dict[tuple[str, int], tuple[int, int]] = {}
        self.errors: list[str] = []
        self.done = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        """Sample until stopped; a node that is down (restart tests) is skipped."""
        turn = 0
        while not self.done.wait(SAMPLE_EVERY_S):
            turn += 1
            try:
                self.sample(self.clients[turn % len(self.clients)])
            except ClientError:
                continue
            except Exception as e:
                self.errors.append(repr(e))

    def sample(self, client: ChainClient) -> None:
        """Record (supply, balances + escrows) at the node's current height."""
        height, supply = query_with_height(client, bank.SUPPLY, None)
        if (client.url, height) in self.snapshot():
            return
        export_height, state = query_with_height(client, EXPORT, None)
        if export_height != height:
            return
        held = sum(b.amount for b in state.bank.balances) + sum(e.amount for e in state.bank.escrows)
        with self.lock:
            self.samples[(client.url, height)] = (supply.supply, held)

    def snapshot(self) -> dict[tuple[str, int], tuple[int, int]]:
        """A copy of the samples so far: (node URL, height) → (supply, balances + escrows)."""
        with self.lock:
            return dict(self.samples)

    def heights(self) -> set[int]:
        """Distinct heights sampled so far."""
        return {h for _, h in self.snapshot()}


@pytest.fixture(scope="module", autouse=True)
def sampler(clients: list[ChainClient]) -> Iterator[SupplySampler]:
    """The supply sampler, running for the whole module."""
    thread = SupplySampler([ChainClient(c.url, timeout=5.0) for c in clients])
    thread.start()
    yield thread
    thread.done.set()
    thread.join(timeout=30)
    for client in thread.clients:
        client.close()


def invoke(*args: str) -> str:
    """Run a `racenet devnet` command in-process; assert success and return its output."""
    result = CliRunner().invoke(devnet, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def heights(clients: list[ChainClient]) -> list[int]:
    """Every node's current height."""
    return [c.height() for c in clients]


def test_status_up_again_and_logs(devnet_dir: Path) -> None:
    """`status --json` shows 4 live validators on loopback, `status` the same in 80 columns; `up` on a running
    devnet only says so."""
    doc = json.loads(invoke("status", "--dir", str(devnet_dir), "--json"))
    assert doc["chain_id"] == CHAIN_ID
    assert [n["name"] for n in doc["nodes"]] == ["node1", "node2", "node3", "node4"]
    for node in doc["nodes"]:
        assert node["alive"] == {"app": True, "cometbft": True}
        assert node["height"] >= 2 and node["api"] is None
        assert node["rpc"].startswith("http://127.0.0.1:")
    text = invoke("status", "--dir", str(devnet_dir))
    table = [line for line in text.splitlines() if line and line[0] in "┏┃┡│└"]
    assert len(table) == 8 and max(len(line) for line in table) <= TABLE_WIDTH, text
    assert all(str(n["rpc"]).rsplit(":", 1)[1] in text for n in doc["nodes"]), "each node's RPC port"
    assert "already running" in invoke("up", "--dir", str(devnet_dir))
    assert "ABCI server listening" in invoke("logs", "--dir", str(devnet_dir), "1", "--app")


def test_four_validators_reach_height_20_on_one_chain(clients: list[ChainClient]) -> None:
    """Every node reaches height 20 and holds the same block 20."""
    for client in clients:
        wait_height(client, 20, timeout=120)
    block_ids = {c.call("block", height="20")["block_id"]["hash"] for c in clients}
    assert len(block_ids) == 1


def test_transfer_sent_to_node1_is_visible_on_node4(clients: list[ChainClient], faucet: PrivateKey) -> None:
    """A transfer broadcast through node 1 shows up in node 4's state once node 4 has its block."""
    recipient = PrivateKey.generate().public_key.address
    outcome = TxSender(clients[0], faucet).send([MsgSend(recipient, AMOUNT)])
    wait_height(clients[3], outcome.height)
    height, balance = query_with_height(clients[3], bank.BALANCE, recipient)
    assert height >= outcome.height
    assert balance.amount == AMOUNT


def signed(key: PrivateKey, body: TxBody) -> bytes:
    """Encode a transaction signed over an arbitrary body (to build invalid ones)."""
    pub = key.public_key.raw
    return encode(SignedTx(TX_VERSION, body, pub, key.sign(sign_bytes(pub, body))))


def bad_tx(case: str, key: PrivateKey, sequence: int) -> bytes:
    """A transaction that CheckTx must reject, of the named kind."""
    send = AnyMsg(MsgSend.TYPE, encode(MsgSend(b"\x01" * 20, 1)))
    if case == "garbage":
        return b"\xff\x00 this is not a transaction"
    if case == "no_messages":
        return signed(key, TxBody(CHAIN_ID, sequence, FEE, "", ()))
    if case == "oversized":
        return b"\x00" * (AuthParams().max_tx_bytes + 1)
    if case == "unknown_message":
        return signed(key, TxBody(CHAIN_ID, sequence, FEE, "", (AnyMsg("nope/Nothing", b""),)))
    if case == "wrong_chain_id":
        return signed(key, TxBody("another-chain", sequence, FEE, "", (send,)))
    if case == "bad_signature":
        good = build_tx(key, CHAIN_ID, sequence, FEE, [MsgSend(b"\x01" * 20, 1)])
        return good[:-1] + bytes([good[-1] ^ 1])
    if case == "wrong_sequence":
        return signed(key, TxBody(CHAIN_ID, sequence + 1000, FEE, "", (send,)))
    raise ValueError(case)


REJECTIONS = {
    "garbage": Code.MALFORMED_TX,
    "no_messages": Code.MALFORMED_TX,
    "oversized": Code.TX_TOO_LARGE,
    "unknown_message": Code.UNKNOWN_MESSAGE,
    "wrong_chain_id": Code.WRONG_CHAIN_ID,
    "bad_signature": Code.BAD_SIGNATURE,
    "wrong_sequence": Code.WRONG_SEQUENCE,
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_check_tx_rejects_bad_bytes_with_racenet_codes(
    case: str, clients: list[ChainClient], faucet: PrivateKey
) -> None:
    """broadcast_tx_sync answers with the foundation's code; the tx never enters the mempool."""
    tx = bad_tx(case, faucet, clients[1].sequence(faucet.public_key.address))
    result = broadcast_raw(clients[1], tx)
    assert (int(result["code"]), result["codespace"]) == (int(REJECTIONS[case]), "racenet"), result
    assert tx_hash(tx) not in mempool_hashes(clients[1])


def test_chain_keeps_going_after_rejections(clients: list[ChainClient], faucet: PrivateKey) -> None:
    """After malformed bytes, blocks keep coming and a valid transfer still commits on every node."""
    start = max(heights(clients))
    garbage = bytes(range(256))
    assert int(broadcast_raw(clients[0], garbage)["code"]) == Code.MALFORMED_TX
    outcome = TxSender(clients[0], faucet).send([MsgSend(PrivateKey.generate().public_key.address, 1)])
    for client in clients:
        wait_height(client, max(start + 2, outcome.height))


def test_power_comes_only_from_the_race(clients: list[ChainClient], faucet: PrivateKey) -> None:
    """No transaction sets validator power (the SetPower shortcut is gone): with no Race daemon mining here, every
    node keeps its genesis power in the App and in CometBFT. A Race tally's change reaching CometBFT at H+2 is
    test_race_devnet's (`test_weights_follow_nonces_tried_and_become_validator_power`)."""
    body = TxBody(CHAIN_ID, 0, FEE, "", (AnyMsg("validators/SetPower", encode(MsgSend(bytes(20), 1))),))
    pub = faucet.public_key.raw
    tx = encode(SignedTx(TX_VERSION, body, pub, faucet.sign(sign_bytes(pub, body))))
    assert int(broadcast_raw(clients[0], tx)["code"]) == Code.UNKNOWN_MESSAGE
    height, app_set = query_with_height(clients[0], validators.LIST, None)
    assert {v.power for v in app_set.validators} == {VALIDATOR_POWER}
    assert set(validator_powers(clients[0], height).values()) == {VALIDATOR_POWER}


def test_killed_validator_others_continue_restarted_one_catches_up_with_equal_app_hashes(
    devnet_dir: Path, net: Devnet, clients: list[ChainClient], faucet: PrivateKey
) -> None:
    """SIGKILL node 3's CometBFT and App (`stop-node --kill`): the other three commit blocks and a
    transfer. Restarted (`restart-node`), node 3 replays what it missed, and for every height from
    before the kill to after the catch-up, the app hash each node's own App returned
    (/block_results) is identical on all four nodes and equals the one the next block's header holds.
    """
    victim, others = net.state.node(3), [clients[0], clients[1], clients[3]]
    killed_at = max(heights(clients))
    assert "killed" in invoke("stop-node", "--dir", str(devnet_dir), "--kill", "3")
    assert not any(net.running(victim, kind) for kind in KINDS)
    for client in others:
        wait_height(client, killed_at + 3, timeout=90)
    recipient = PrivateKey.generate().public_key.address
    sent = TxSender(clients[0], faucet).send([MsgSend(recipient, AMOUNT)])

    assert "node3 restarted" in invoke("restart-node", "--dir", str(devnet_dir), "3")
    target = max(heights(others)) + 2
    for client in clients:
        wait_height(client, target, timeout=120)
    _, balance = query_with_height(clients[2], bank.BALANCE, recipient)
    assert balance.amount == AMOUNT
    assert killed_at - 1 < sent.height < target
    for height in range(max(killed_at - 1, 1), target):
        hashes = {app_hash_after(client, height) for client in clients}
        assert len(hashes) == 1, f"app hashes differ at height {height}: {hashes}"
        assert header_app_hash(clients[2], height + 1) == hashes.pop()


def test_down_then_up_resumes_the_same_chain(devnet_dir: Path, clients: list[ChainClient], faucet: PrivateKey) -> None:
    """`down` stops exactly the recorded processes and keeps the data; `up` resumes the same chain and state."""
    genesis = (devnet_dir / "node1" / "config" / "genesis.json").read_bytes()
    first_block = clients[0].call("block", height="1")["block_id"]["hash"]
    _, balance = query_with_height(clients[0], bank.BALANCE, faucet.public_key.address)
    before = Devnet.open(devnet_dir)
    assert sum(len(node.processes) for node in before.state.nodes) == 8

    invoke("down", "--dir", str(devnet_dir))
    assert not any(before.running(node, kind) for node in before.state.nodes for kind in KINDS)
    recorded = json.loads((devnet_dir / "devnet.json").read_text())["nodes"]
    assert all(node["processes"] == {} for node in recorded)

    invoke("up", "--dir", str(devnet_dir))
    resumed_at = max(heights(clients))
    for client in clients:
        wait_height(client, resumed_at + 2)
    assert (devnet_dir / "node1" / "config" / "genesis.json").read_bytes() == genesis
    assert clients[3].call("block", height="1")["block_id"]["hash"] == first_block
    assert query_with_height(clients[3], bank.BALANCE, faucet.public_key.address)[1] == balance


def test_supply_invariant_holds_at_every_sampled_height(sampler: SupplySampler, clients: list[ChainClient]) -> None:
    """supply == sum(balances) + sum(escrows) at every height sampled during the module, on all nodes."""
    wait_for(
        f"{MIN_SAMPLED_HEIGHTS} sampled heights",
        lambda: len(sampler.heights()) >= MIN_SAMPLED_HEIGHTS,
        timeout=120,
    )
    samples = sampler.snapshot()
    assert sampler.errors == []
    assert {key: value for key, value in samples.items() if value[0] != value[1]} == {}
    assert {url for url, _ in samples} == {client.url for client in clients}
