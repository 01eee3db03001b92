"""The embedded engine: a single-validator chain in one process.

It drives the App block by block from a local mempool and serves a subset of
CometBFT's RPC (status, broadcast_tx_sync, tx, abci_query, block), so the same
client talks to it and to a CometBFT network.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from racenet import __version__
from racenet.abci.driver import Driver, Validator
from racenet.chain.app import App
from racenet.chain.genesis import Genesis, format_time, load_genesis
from racenet.chain.tx import tx_hash
from racenet.chain.types import FinalizeBlockResult
from racenet.node.blockstore import BlockStore, tx_result_json

log = logging.getLogger(__name__)

MEMPOOL_MAX_TXS = 10_000


class RpcError(Exception):
    """A JSON-RPC error (CometBFT uses -32603 with a `data` explanation)."""

    def __init__(self, message: str, code: int = -32603) -> None:
        super().__init__(message)
        self.code = code


class EmbeddedNode:
    """Mempool, block loop and RPC handlers over one App and one block store."""

    def __init__(self, home: Path, block_time: float = 1.0, validators: Sequence[Validator] = ()) -> None:
        self.home = home
        self.block_time = block_time
        self.genesis: Genesis = load_genesis(home / "config" / "genesis.json")
        data = home / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.app = App(data / "app.db")
        self.blocks = BlockStore(data / "blocks.db")
        self.driver = Driver(self.app, validators)
        self.lock = threading.Lock()
        self.mempool: list[bytes] = []
        self.stopping = threading.Event()
        self._recover()

    def _recover(self) -> None:
        """Run InitChain on a new chain; replay a block the App missed in a crash."""
        if self.app.height == 0:
            self.driver.init_chain(self.genesis)
        stored = self.blocks.height()
        if stored < self.app.height:
            raise RuntimeError(f"block store at {stored} is behind the app at {self.app.height}")
        while self.app.height < stored:
            entry = self.blocks.block(self.app.height + 1)
            assert entry is not None
            self.driver.execute(entry[0])
            log.info("replayed block %d", self.app.height)

    def produce_block(self) -> FinalizeBlockResult:
        """Build, execute, store and commit the next block from the mempool."""
        with self.lock:
            now = max(int(time.time()), self.app.last_time, self.genesis.genesis_time)
            block = self.driver.propose(self.mempool, now)
            included = set(block.txs)
            result = self.driver.execute(block, self.blocks.save)
            left = [tx for tx in self.mempool if tx not in included]
            self.mempool = [tx for tx in left if self.app.check_tx(tx, recheck=True).code == 0]
            return result

    def run(self) -> None:
        """Produce a block every `block_time` seconds until `stop()`."""
        while not self.stopping.wait(self.block_time):
            self.produce_block()

    def stop(self) -> None:
        """Ask the block loop to finish its current block and return."""
        self.stopping.set()

    def close(self) -> None:
        """Release the databases."""
        self.app.close()
        self.blocks.close()

    def status(self) -> dict[str, Any]:
        """CometBFT-shaped `/status`."""
        with self.lock:
            height = self.app.height
            entry = self.blocks.block(height)
            return {
                "node_info": {"network": self.app.chain_id, "version": __version__, "moniker": "embedded"},
                "sync_info": {
                    "latest_block_height": str(height),
                    "latest_block_hash": entry[1].hex().upper() if entry else "",
                    "latest_app_hash": self.app.app_hash.hex().upper(),
                    "latest_block_time": format_time(entry[0].time if entry else self.genesis.genesis_time),
                    "catching_up": False,
                },
            }

    def broadcast_tx_sync(self, tx: bytes) -> dict[str, Any]:
        """CheckTx a transaction and add it to the mempool if accepted."""
        with self.lock:
            if len(self.mempool) >= MEMPOOL_MAX_TXS:
                raise RpcError("mempool is full")
            if tx in self.mempool:
                raise RpcError("tx already exists in cache")
            result = self.app.check_tx(tx)
            if result.code == 0:
                self.mempool.append(tx)
        body = tx_result_json(result)
        return {
            "code": body["code"],
            "data": body["data"],
            "log": body["log"],
            "codespace": body["codespace"],
            "hash": tx_hash(tx).hex().upper(),
        }

    def tx(self, hash_: bytes) -> dict[str, Any]:
        """CometBFT-shaped `/tx`: a committed transaction and its result."""
        with self.lock:
            found = self.blocks.tx(hash_)
        if found is None:
            raise RpcError(f"tx ({hash_.hex().upper()}) not found")
        return {
            "hash": hash_.hex().upper(),
            "height": str(found["height"]),
            "index": found["index"],
            "tx_result": found["result"],
            "tx": base64.b64encode(found["tx"]).decode(),
        }

    def abci_query(self, path: str, data: bytes, height: int) -> dict[str, Any]:
        """CometBFT-shaped `/abci_query`."""
        with self.lock:
            r = self.app.query(path, data, height)
        return {
            "response": {
                "code": r.code,
                "log": r.log,
                "value": base64.b64encode(r.value).decode(),
                "height": str(r.height),
                "codespace": "racenet" if r.code else "",
            }
        }

    def block(self, height: int) -> dict[str, Any]:
        """CometBFT-shaped `/block` (header fields and base64 transactions)."""
        with self.lock:
            entry = self.blocks.block(height or self.app.height)
        if entry is None:
            raise RpcError(f"height {height} is not available")
        block, hash_, _ = entry
        return {
            "block_id": {"hash": hash_.hex().upper()},
            "block": {
                "header": {"chain_id": self.app.chain_id, "height": str(block.height), "time": format_time(block.time)},
                "data": {"txs": [base64.b64encode(tx).decode() for tx in block.txs]},
            },
        }
