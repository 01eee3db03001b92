"""The embedded engine's block store: decided blocks and transaction results.

A block is saved before the App commits it, so after a crash the engine can replay
the one block the App may be missing (as CometBFT does in its handshake).
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from racenet.chain.codec import decode, encode
from racenet.chain.tx import tx_hash
from racenet.chain.types import BlockRequest, FinalizeBlockResult, TxResult


@dataclass(frozen=True)
class Txs:
    """A block's transaction list, for storage."""

    txs: tuple[bytes, ...]


def tx_result_json(r: TxResult) -> dict[str, Any]:
    """A transaction result in CometBFT's JSON shape (data base64, events with attributes)."""
    return {
        "code": r.code,
        "data": base64.b64encode(r.data).decode(),
        "log": r.log,
        "codespace": r.codespace,
        "events": [
            {"type": e.type, "attributes": [{"key": k, "value": v, "index": True} for k, v in e.attributes]}
            for e in r.events
        ],
    }


def block_hash(block: BlockRequest, prev_hash: bytes) -> bytes:
    """A block's identity: SHA-256 of its height, time, previous hash and transactions."""
    return hashlib.sha256(encode(BlockRequest(block.height, block.time, block.txs, b"", prev_hash))).digest()


class BlockStore:
    """SQLite tables of blocks and transaction results."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, time INTEGER NOT NULL,"
            " hash BLOB NOT NULL, app_hash BLOB NOT NULL, txs BLOB NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS txs (hash BLOB PRIMARY KEY, height INTEGER NOT NULL,"
            " idx INTEGER NOT NULL, tx BLOB NOT NULL, result TEXT NOT NULL)"
        )

    def height(self) -> int:
        """Height of the newest stored block (0 if none)."""
        row = self.db.execute("SELECT MAX(height) FROM blocks").fetchone()
        return int(row[0] or 0)

    def save(self, block: BlockRequest, result: FinalizeBlockResult) -> None:
        """Store a finalized block and its transaction results in one transaction."""
        prev = self.block_hash(block.height - 1)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?)",
                (block.height, block.time, block_hash(block, prev), result.app_hash, encode(Txs(block.txs))),
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO txs VALUES (?, ?, ?, ?, ?)",
                [
                    (tx_hash(tx), block.height, i, tx, json.dumps(tx_result_json(r)))
                    for i, (tx, r) in enumerate(zip(block.txs, result.tx_results, strict=True))
                ],
            )

    def block_hash(self, height: int) -> bytes:
        """Hash of the stored block at `height` (empty if absent)."""
        row = self.db.execute("SELECT hash FROM blocks WHERE height = ?", (height,)).fetchone()
        return b"" if row is None else bytes(row[0])

    def block(self, height: int) -> tuple[BlockRequest, bytes, bytes] | None:
        """The block at `height` with its hash and the app hash after it, if stored."""
        row = self.db.execute("SELECT time, hash, app_hash, txs FROM blocks WHERE height = ?", (height,)).fetchone()
        if row is None:
            return None
        txs = decode(Txs, bytes(row[3])).txs
        return BlockRequest(height, int(row[0]), txs), bytes(row[1]), bytes(row[2])

    def tx(self, hash_: bytes) -> dict[str, Any] | None:
        """A committed transaction's height, index, bytes and result, if known."""
        row = self.db.execute("SELECT height, idx, tx, result FROM txs WHERE hash = ?", (hash_,)).fetchone()
        if row is None:
            return None
        return {"height": int(row[0]), "index": int(row[1]), "tx": bytes(row[2]), "result": json.loads(row[3])}

    def close(self) -> None:
        """Close the database."""
        self.db.close()
