"""The shape every chain module has, after Cosmos SDK's `x/<module>`.

A module owns a key prefix (its name), its messages, a keeper that alone reads and
writes those keys, genesis import/export, queries and per-block hooks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from racenet.chain.codec import Reader, decode, encode, encode_uvarint
from racenet.chain.errors import ChainError, Code
from racenet.chain.store import KVStore, PrefixStore
from racenet.chain.types import Event, ValidatorUpdate

P = TypeVar("P")
T = TypeVar("T")


@dataclass
class Context:
    """What a handler or hook sees: the state branch, block facts and emitted events."""

    store: KVStore
    chain_id: str
    height: int
    time: int
    last_app_hash: bytes = b""
    signer: bytes = b""
    signer_pub_key: bytes = b""
    events: list[Event] = field(default_factory=list)

    def module_store(self, name: str) -> PrefixStore:
        """The key space of module `name` (only that module's keeper calls this)."""
        return PrefixStore(self.store, name.encode() + b"/")

    def emit(self, type_: str, **attributes: str) -> None:
        """Record an event for the engine to index."""
        self.events.append(Event(type_, tuple(attributes.items())))


class Msg:
    """Base of every message dataclass: `TYPE` is its wire name, e.g. `bank/Send`."""

    TYPE: ClassVar[str]

    def validate(self) -> None:
        """Stateless checks; raise ChainError(INVALID_MESSAGE) on a bad field."""


class Module:
    """Default no-op hooks; concrete modules override what they need."""

    name: ClassVar[str]
    messages: ClassVar[tuple[type[Msg], ...]] = ()

    def init_genesis(self, ctx: Context, state: dict[str, Any]) -> None:
        """Load this module's part of genesis `app_state`."""

    def export_genesis(self, ctx: Context) -> dict[str, Any]:
        """This module's part of `app_state`, such that init_genesis restores it."""
        return {}

    def handle(self, ctx: Context, msg: Msg) -> bytes:
        """Execute one of this module's messages; raise ChainError to reject the tx."""
        raise ChainError(Code.UNKNOWN_MESSAGE, f"module {self.name} has no handler for {msg.TYPE}")

    def begin_block(self, ctx: Context) -> None:
        """Hook run before a block's transactions."""

    def end_block(self, ctx: Context) -> list[ValidatorUpdate]:
        """Hook run after a block's transactions; may change validator power."""
        return []

    def query(self, ctx: Context, path: str, data: bytes) -> Any:
        """Answer `<module>/<path>` with a JSON-serialisable value."""
        raise ChainError(Code.UNKNOWN_QUERY, f"unknown query {self.name}/{path}")


def decode_uint(raw: bytes | None) -> int:
    """A stored unsigned integer (an absent key reads as 0)."""
    if raw is None:
        return 0
    r = Reader(raw)
    n = r.uvarint()
    r.finish()
    return n


class ModuleKeeper:
    """Base of every module's keeper: typed reads and writes in the module's own key space."""

    name: ClassVar[str]

    def store(self, ctx: Context) -> PrefixStore:
        """This module's keys in the context's state."""
        return ctx.module_store(self.name)

    def load(self, ctx: Context, key: bytes, tp: type[T]) -> T | None:
        """Decode the record at `key` (None if absent)."""
        raw = self.store(ctx).get(key)
        return None if raw is None else decode(tp, raw)

    def save(self, ctx: Context, key: bytes, value: Any) -> None:
        """Store a record in its canonical encoding."""
        self.store(ctx).set(key, encode(value))

    def load_uint(self, ctx: Context, key: bytes) -> int:
        """The integer at `key` (0 if absent)."""
        return decode_uint(self.store(ctx).get(key))

    def save_uint(self, ctx: Context, key: bytes, value: int) -> None:
        """Store an integer; 0 deletes the key, so empty entries take no space."""
        if value:
            self.store(ctx).set(key, encode_uvarint(value))
        else:
            self.store(ctx).delete(key)


def load_params(cls: type[P], data: dict[str, Any]) -> P:
    """Build a params dataclass from genesis JSON, rejecting unknown keys and wrong types."""
    types = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(types)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    for key, value in data.items():
        if types[key] in (str, "str"):
            if not isinstance(value, str):
                raise ValueError(f"{cls.__name__}.{key} must be a string, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{cls.__name__}.{key} must be a non-negative integer, got {value!r}")
    return cls(**data)


def json_bytes(value: Any) -> bytes:
    """Deterministic JSON bytes for query answers and genesis."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
