"""State storage: a crash-safe SQLite key-value store and in-memory branches over it.

A block executes in a `Branch` of the committed store; each transaction in a branch of
that. A failed transaction's branch is dropped, so it changes nothing. `Commit` writes
the block's changes, height and app hash in one SQLite transaction: after a crash
the store is at the last committed block, never between two.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from racenet.chain.codec import encode_uvarint

Changes = dict[bytes, bytes | None]
READ_CACHE_SIZE = 100_000


class KVStore(Protocol):
    """Read and write access to byte keys; `None` means absent."""

    def get(self, key: bytes) -> bytes | None: ...
    def set(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


class CommittedStore:
    """The persisted state: a SQLite database holding keys, values, height and app hash."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
        self.cache: Changes = {}

    def get(self, key: bytes) -> bytes | None:
        """The committed value of `key` (reads are cached until the key changes)."""
        if key in self.cache:
            return self.cache[key]
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        value = None if row is None else bytes(row[0])
        if len(self.cache) >= READ_CACHE_SIZE:
            self.cache.clear()
        self.cache[key] = value
        return value

    def set(self, key: bytes, value: bytes) -> None:
        """Refuse: the committed store changes only through `apply`."""
        raise TypeError("the committed store is written only by apply()")

    def delete(self, key: bytes) -> None:
        """Refuse: the committed store changes only through `apply`."""
        raise TypeError("the committed store is written only by apply()")

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Committed (key, value) pairs under `prefix`, in key order."""
        end = prefix_end(prefix)
        if end is None:
            rows = self.db.execute("SELECT k, v FROM kv WHERE k >= ? ORDER BY k", (prefix,))
        else:
            rows = self.db.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k", (prefix, end))
        for k, v in rows.fetchall():
            yield bytes(k), bytes(v)

    def last_commit(self) -> tuple[int, bytes]:
        """Height and app hash of the last committed block ((0, b"") before the first)."""
        rows = dict(self.db.execute("SELECT k, v FROM meta").fetchall())
        return int(rows.get("height", 0)), bytes(rows.get("app_hash", b""))

    def apply(self, changes: Changes, height: int, app_hash: bytes) -> None:
        """Atomically write a block's changes together with its height and app hash."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)",
                [(k, v) for k, v in changes.items() if v is not None],
            )
            self.db.executemany("DELETE FROM kv WHERE k = ?", [(k,) for k, v in changes.items() if v is None])
            self.db.executemany(
                "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                [("height", height), ("app_hash", app_hash)],
            )
        self.cache.update(changes)

    def close(self) -> None:
        """Close the database."""
        self.db.close()


class Branch:
    """An in-memory layer of writes over a parent store; `write()` pushes them down."""

    def __init__(self, parent: KVStore) -> None:
        self.parent = parent
        self.changes: Changes = {}

    def get(self, key: bytes) -> bytes | None:
        """The value seen through this branch."""
        if key in self.changes:
            return self.changes[key]
        return self.parent.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        """Record a write in this branch only."""
        self.changes[key] = value

    def delete(self, key: bytes) -> None:
        """Record a deletion in this branch only."""
        self.changes[key] = None

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs under `prefix` as seen through this branch, in key order."""
        merged: dict[bytes, bytes | None] = dict(self.parent.iterate(prefix))
        merged.update((k, v) for k, v in self.changes.items() if k.startswith(prefix))
        for k in sorted(merged):
            v = merged[k]
            if v is not None:
                yield k, v

    def write(self) -> None:
        """Apply this branch's writes to its parent."""
        for k, v in self.changes.items():
            if v is None:
                self.parent.delete(k)
            else:
                self.parent.set(k, v)
        self.changes = {}


class PrefixStore:
    """A module's view of the state: every key is silently prefixed with the module's name."""

    def __init__(self, parent: KVStore, prefix: bytes) -> None:
        self.parent = parent
        self.prefix = prefix

    def get(self, key: bytes) -> bytes | None:
        """Value of the module's `key`."""
        return self.parent.get(self.prefix + key)

    def set(self, key: bytes, value: bytes) -> None:
        """Write the module's `key`."""
        self.parent.set(self.prefix + key, value)

    def delete(self, key: bytes) -> None:
        """Delete the module's `key`."""
        self.parent.delete(self.prefix + key)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The module's (key, value) pairs under `prefix`, with the module prefix removed."""
        n = len(self.prefix)
        for k, v in self.parent.iterate(self.prefix + prefix):
            yield k[n:], v


def changes_hash_input(prev_app_hash: bytes, height: int, changes: Changes) -> bytes:
    """The bytes hashed into a block's app hash: previous hash, height, sorted changes."""
    out = bytearray(b"racenet/apphash/v1")
    out += encode_uvarint(len(prev_app_hash)) + prev_app_hash + encode_uvarint(height)
    for k in sorted(changes):
        v = changes[k]
        out += encode_uvarint(len(k)) + k
        out += b"\x00" if v is None else b"\x01" + encode_uvarint(len(v)) + v
    return bytes(out)
