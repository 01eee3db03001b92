"""Helpers for the network suite: free ports, polling with deadlines, and RPC reads at a height."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from racenet.chain.query import QuerySpec
from racenet.chain.tx import tx_hash
from racenet.devnet.network import port_in_use
from racenet.devnet.state import PORTS_PER_NODE, Ports
from racenet.node.client import ChainClient, ClientError

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")
POLL_S = 0.2
LOW_PORT, HIGH_PORT = 20_000, 32_000
"""Below Linux's ephemeral range (32768+), so outgoing connections cannot take our ports."""


def free_base_port(nodes: int) -> int:
    """A random base port whose whole devnet port block is free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(LOW_PORT, HIGH_PORT - PORTS_PER_NODE * nodes, PORTS_PER_NODE)
        ports = [Ports.for_node(base, i) for i in range(1, nodes + 1)]
        if not any(port_in_use(p) for node in ports for p in (node.p2p, node.rpc, node.abci, node.api)):
            return base
    raise RuntimeError("no free port block found")


def wait_for(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Poll `check` until it returns a value other than None/False; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_S)


def height_or_none(client: ChainClient) -> int | None:
    """The node's height, or None while it does not answer."""
    try:
        return client.height()
    except ClientError:
        return None


def wait_height(client: ChainClient, height: int, timeout: float = 60.0) -> int:
    """Wait until the node reports at least `height`; returns the height it reported."""
    return wait_for(
        f"{client.url} to reach height {height}",
        lambda: h if (h := height_or_none(client)) is not None and h >= height else None,
        timeout,
    )


def query_with_height(client: ChainClient, spec: QuerySpec[A, R], arg: A) -> tuple[int, R]:
    """A typed query's answer together with the height the App answered at."""
    response = client.call("abci_query", path=f'"{spec.path}"', data="0x" + spec.arg.encode(arg).hex())["response"]
    assert int(response.get("code", 0)) == 0, response
    return int(response["height"]), spec.decode(json.loads(base64.b64decode(response["value"])))


def broadcast_raw(client: ChainClient, tx: bytes) -> dict[str, Any]:
    """`broadcast_tx_sync` as a JSON-RPC POST (a GET URL cannot carry a tx near the size limit)."""
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "broadcast_tx_sync",
        "params": {"tx": base64.b64encode(tx).decode()},
    }
    body = client.http.post("/", json=request).json()
    assert "result" in body, body
    result: dict[str, Any] = body["result"]
    return result


def mempool_hashes(client: ChainClient) -> set[bytes]:
    """Hashes of the transactions waiting in the node's mempool."""
    txs = client.call("unconfirmed_txs", limit="100")["txs"] or []
    return {tx_hash(base64.b64decode(tx)) for tx in txs}


def app_hash_after(client: ChainClient, height: int) -> str:
    """The app hash this node's own App returned when it executed block `height` (hex)."""
    result = client.call("block_results", height=str(height))
    return base64.b64decode(result["app_hash"]).hex().upper()


def header_app_hash(client: ChainClient, height: int) -> str:
    """The app hash recorded in block `height`'s header (the state after block height-1)."""
    return str(client.call("block", height=str(height))["block"]["header"]["app_hash"]).upper()


def validator_powers(client: ChainClient, height: int) -> dict[bytes, int]:
    """CometBFT's validator set at `height`: raw ed25519 key → voting power."""
    result = client.call("validators", height=str(height), per_page="100")
    return {base64.b64decode(v["pub_key"]["value"]): int(v["voting_power"]) for v in result["validators"]}
