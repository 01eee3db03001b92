"""kill -9 a running node; on restart it resumes at its last commit and loses no committed tx."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from racenet.chain.app import App
from racenet.chain.modules import bank
from racenet.chain.modules.bank import MsgSend
from racenet.node.blockstore import BlockStore
from racenet.node.client import ChainClient, ClientError, TxOutcome
from racenet.node.sender import TxSender
from tests.chain import FEE, INITIAL_BALANCE, genesis_for, key

ALICE = key(1)
RECIPIENT = key(77).public_key.address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(home: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "racenet",
        "start",
        "--home",
        str(home),
        "--rpc",
        f"127.0.0.1:{port}",
        "--block-time",
        "0.1",
    ]
    log = (home / "node.log").open("ab")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def wait_until_serving(client: ChainClient, min_height: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            height = client.height()
            if height >= min_height:
                return height
        except ClientError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"node did not reach height {min_height}")


def send_transfers(client: ChainClient, count: int) -> list[TxOutcome]:
    sender = TxSender(client, ALICE)
    return [sender.send([MsgSend(RECIPIENT, 1 + i)]) for i in range(count)]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    genesis_for([ALICE]).save(tmp_path / "config" / "genesis.json")
    return tmp_path


def test_kill_9_and_restart_loses_nothing_committed(home: Path) -> None:
    port = free_port()
    client = ChainClient(f"http://127.0.0.1:{port}", timeout=5)
    committed: list[TxOutcome] = []
    in_flight: dict[str, int] = {}
    for cycle in range(3):
        node = start_node(home, port)
        try:
            wait_until_serving(client, 1)
            committed += send_transfers(client, 4)
            amount = 1000 + cycle
            in_flight[client.broadcast(_next_transfer(client, amount))] = amount
            time.sleep(0.05 * cycle)
        finally:
            os.kill(node.pid, signal.SIGKILL)
            node.wait(timeout=30)

        app = App(home / "data" / "app.db")
        height, app_hash = app.info().last_block_height, app.info().last_block_app_hash
        app.close()
        assert height >= max(o.height for o in committed)
        stored = BlockStore(home / "data" / "blocks.db")
        assert stored.height() in (height, height + 1), "at most one decided block awaits replay"
        entry = stored.block(height)
        stored.close()
        assert entry is not None and entry[2] == app_hash

    node = start_node(home, port)
    try:
        wait_until_serving(client, height + 1)
        for outcome in committed:
            assert client.wait_for_tx(outcome.hash, timeout=5).code == 0
        landed = [amount for h, amount in in_flight.items() if _committed(client, h)]
        received = client.query(bank.BALANCE, RECIPIENT).amount
        assert received == 3 * (1 + 2 + 3 + 4) + sum(landed)
        assert client.query(bank.SUPPLY).supply == INITIAL_BALANCE
        stored = BlockStore(home / "data" / "blocks.db")
        entry = stored.block(height)
        stored.close()
        assert entry is not None and entry[2] == app_hash, "the committed app hash did not change"
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0
        client.close()


def _next_transfer(client: ChainClient, amount: int) -> bytes:
    from racenet.chain.tx import build_tx

    seq = client.sequence(ALICE.public_key.address)
    return build_tx(ALICE, client.chain_id(), seq, FEE, [MsgSend(RECIPIENT, amount)])


def _committed(client: ChainClient, hash_hex: str) -> bool:
    try:
        return client.wait_for_tx(hash_hex, timeout=0).code == 0
    except ClientError:
        return False
