"""State storage: a crash-safe SQLite key-value store and in-memory branches over it.

A block executes in a `Branch` of the committed store; each transaction in a branch of
that. A failed transaction's branch is dropped, so it changes nothing. `Commit` writes
the block's changes, height and app hash in one SQLite transaction: after a crash
the store is at the last committed block, never between two.

Readers on other threads (ABCI queries) use a `StoreReader`: a second, read-only SQLite
connection whose `snapshot()` is one read transaction, so a query sees exactly one commit
(WAL mode lets it read while `apply` writes) and never holds up the writer.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


def _read_last_commit(db: sqlite3.Connection) -> tuple[int, bytes]:
    """Height and app hash in `meta` as `db` sees them ((0, b"") before the first commit)."""
    rows = dict(db.execute("SELECT k, v FROM meta").fetchall())
    return int(rows.get("height", 0)), bytes(rows.get("app_hash", b""))


def _iterate(db: sqlite3.Connection, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) rows of `kv` under `prefix`, in key order."""
    end = prefix_end(prefix)
    if end is None:
        rows = db.execute("SELECT k, v FROM kv WHERE k >= ? ORDER BY k", (prefix,))
    else:
        rows = db.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k", (prefix, end))
    for k, v in rows.fetchall():
        yield bytes(k), bytes(v)


class CommittedStore:
    """The persisted state: a SQLite database holding keys, values, height and app hash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader: StoreReader | None = None
        self._reader_lock = threading.Lock()
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
        return _iterate(self.db, prefix)

    def last_commit(self) -> tuple[int, bytes]:
        """Height and app hash of the last committed block ((0, b"") before the first)."""
        return _read_last_commit(self.db)

    def reader(self) -> StoreReader:
        """The store's read-only connection for other threads (opened on first use, closed with the store)."""
        with self._reader_lock:
            if self._reader is None:
                in_memory = str(self.path) == ":memory:"
                self._reader = StoreReader(self.path, shared=self.db if in_memory else None)
            return self._reader

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
        """Close the database (and its reader, if one was opened)."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self.db.close()


class ReadSnapshot:
    """Committed state as of one commit: valid only inside the `StoreReader.snapshot()` that made it."""

    def __init__(self, db: sqlite3.Connection, height: int, app_hash: bytes) -> None:
        self._db: sqlite3.Connection | None = db
        self.height = height
        self.app_hash = app_hash

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("read snapshot used after its snapshot() block ended")
        return self._db

    def get(self, key: bytes) -> bytes | None:
        """The value of `key` in this snapshot."""
        row = self._open_db().execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set(self, key: bytes, value: bytes) -> None:
        """Refuse: a snapshot is read-only."""
        raise TypeError("a read snapshot is read-only")

    def delete(self, key: bytes) -> None:
        """Refuse: a snapshot is read-only."""
        raise TypeError("a read snapshot is read-only")

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs under `prefix` in this snapshot, in key order."""
        yield from _iterate(self._open_db(), prefix)

    def end(self) -> None:
        """Make further reads fail: the read transaction behind this snapshot is over."""
        self._db = None


class StoreReader:
    """A read-only SQLite connection to a committed store, for threads other than the writer's.

    Each `snapshot()` is one read transaction: SQLite fixes its view at the first read, so
    every row read inside it, and the height and app hash, come from the same commit even
    if `CommittedStore.apply` commits meanwhile (WAL: readers and the writer do not wait for
    each other). Snapshots on one reader are taken one at a time (callers queue on a lock).

    An in-memory database has no second connection: given `shared` (the writer's own
    connection), the reader reads through it, which is consistent only on the writer's thread.
    """

    def __init__(self, path: Path, shared: sqlite3.Connection | None = None) -> None:
        self._owned = shared is None
        if shared is None:
            uri = Path(path).resolve().as_uri() + "?mode=ro"
            shared = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            shared.execute("PRAGMA query_only=ON")
        self.db = shared
        self._lock = threading.Lock()

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        """One consistent read-only view of the committed store, for the duration of the block."""
        with self._lock:
            self.db.execute("BEGIN")
            try:
                height, app_hash = _read_last_commit(self.db)  # the first read fixes the snapshot
                snap = ReadSnapshot(self.db, height, app_hash)
                try:
                    yield snap
                finally:
                    snap.end()
            finally:
                self.db.execute("ROLLBACK")

    def close(self) -> None:
        """Close the connection (waits for a snapshot in progress to end)."""
        with self._lock:
            if self._owned:
                self.db.close()


class Branch:
    """An in-memory layer of writes over a parent store; `write()` pushes them down.

    Its written keys are also kept sorted, so a prefix scan costs the keys under the prefix, not every
    write of the block (a tally reads many small prefixes of a branch holding many writes).
    """

    def __init__(self, parent: KVStore, changes: Changes | None = None) -> None:
        self.parent = parent
        self.changes: Changes = dict(changes or {})
        self._keys = sorted(self.changes)

    def get(self, key: bytes) -> bytes | None:
        """The value seen through this branch."""
        if key in self.changes:
            return self.changes[key]
        return self.parent.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        """Record a write in this branch only."""
        self._record(key, value)

    def delete(self, key: bytes) -> None:
        """Record a deletion in this branch only."""
        self._record(key, None)

    def _record(self, key: bytes, value: bytes | None) -> None:
        if key not in self.changes:
            bisect.insort(self._keys, key)
        self.changes[key] = value

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs under `prefix` as seen through this branch, in key order."""
        merged: dict[bytes, bytes | None] = dict(self.parent.iterate(prefix))
        i = bisect.bisect_left(self._keys, prefix)
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            merged[self._keys[i]] = self.changes[self._keys[i]]
            i += 1
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
        self._keys = []


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
