"""Typed state collections, after Cosmos SDK's `collections`: each keeper declares its schema once.

A keeper lists its state as class attributes:

    class Keeper(ModuleKeeper):
        name = "race"
        params = Item(b"params", Record(Params), default=Params())
        weights = UintMap(b"weight/", ADDRESS)
        commitments = Map(b"commit/", pair(U64, ADDRESS), Record(Commitment))

and reads and writes through them (`self.weights.get(ctx, address)`), so no key bytes are built
by hand anywhere else. A collection learns its module from the keeper class it is declared in;
it is the only thing that opens a module's part of the store (`<module>/<prefix><key>`).

Keys: a scalar key codec (`ADDRESS`, `PUBKEY`, `HASH` fixed-size bytes, `U64` big-endian so
numeric order is byte order, `STRING`, `BYTES`) or a composite of them joined by `/`
(`pair`, `triple`). A composite's variable-size part must be its last one or free of `/`.
Prefix scans take the leading parts of a composite key: `commitments.items(ctx, (cycle,))`.

Values: `Record(cls)` (the canonical codec), `UVARINT`, `RAW` bytes and `TEXT`. `UintMap` and
`UintItem` hold integers where absence means 0 and writing 0 deletes the key, so empty entries
take no space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from racenet.chain.codec import Reader, decode, encode, encode_uvarint
from racenet.chain.scalars import Amount
from racenet.chain.store import PrefixStore

if TYPE_CHECKING:
    from racenet.chain.module import Context

K = TypeVar("K")
V = TypeVar("V")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")

SEPARATOR = b"/"


class KeyCodec(Generic[K]):
    """How a key becomes bytes and back; `prefix` encodes the leading parts of a key for a scan."""

    def encode(self, key: K) -> bytes:
        """The key's bytes."""
        raise NotImplementedError

    def decode(self, raw: bytes) -> K:
        """The key of these bytes."""
        raise NotImplementedError

    def prefix(self, parts: tuple[Any, ...]) -> bytes:
        """The bytes every key starting with `parts` starts with (a whole key: exactly its bytes)."""
        return self.encode(parts[0]) if parts else b""


class Scalar(KeyCodec[K]):
    """A one-part key: `size` bytes exactly, or any length (`size` None)."""

    def __init__(self, name: str, size: int | None, to_bytes: Callable[[K], bytes], from_bytes: Callable[[bytes], K]):
        self.name = name
        self.size = size
        self.to_bytes = to_bytes
        self.from_bytes = from_bytes

    def encode(self, key: K) -> bytes:
        """The key's bytes; ValueError if a fixed-size key has the wrong length."""
        raw = self.to_bytes(key)
        if self.size is not None and len(raw) != self.size:
            raise ValueError(f"{self.name} key must be {self.size} bytes, got {len(raw)}")
        return raw

    def decode(self, raw: bytes) -> K:
        """The key of these bytes."""
        return self.from_bytes(raw)


def _u64(n: int) -> bytes:
    try:
        return n.to_bytes(8, "big")
    except OverflowError:
        raise ValueError(f"u64 key out of range: {n}") from None


def _fixed(name: str, size: int) -> Scalar[bytes]:
    return Scalar(name, size, bytes, bytes)


ADDRESS = _fixed("address", 20)
PUBKEY = _fixed("public key", 32)
HASH = _fixed("hash", 32)
U64: Scalar[int] = Scalar("u64", 8, _u64, lambda raw: Amount(int.from_bytes(raw, "big")))
STRING: Scalar[str] = Scalar("string", None, str.encode, bytes.decode)
BYTES: Scalar[bytes] = Scalar("bytes", None, bytes, bytes)


class Composite(KeyCodec[Any]):
    """A key of several scalar parts joined by `/`."""

    def __init__(self, *parts: Scalar[Any]) -> None:
        self.parts = parts

    def encode(self, key: tuple[Any, ...]) -> bytes:
        """The parts' bytes joined by `/`."""
        if len(key) != len(self.parts):
            raise ValueError(f"key has {len(key)} parts, expected {len(self.parts)}")
        return self.prefix(key)

    def prefix(self, parts: tuple[Any, ...]) -> bytes:
        """The leading parts' bytes, each followed by `/` unless the key is whole."""
        encoded = []
        for codec, value in zip(self.parts, parts, strict=False):
            raw = codec.encode(value)
            if codec.size is None and codec is not self.parts[-1] and SEPARATOR in raw:
                raise ValueError(f"{codec.name} key part may not contain '/'")
            encoded.append(raw)
        joined = SEPARATOR.join(encoded)
        return joined if len(parts) == len(self.parts) or not parts else joined + SEPARATOR

    def decode(self, raw: bytes) -> tuple[Any, ...]:
        """The parts of a composite key's bytes."""
        out, rest = [], raw
        for codec in self.parts[:-1]:
            if codec.size is not None:
                piece, sep, rest = rest[: codec.size], rest[codec.size : codec.size + 1], rest[codec.size + 1 :]
            else:
                piece, sep, rest = rest.partition(SEPARATOR)
            if sep != SEPARATOR:
                raise ValueError(f"malformed composite key {raw!r}")
            out.append(codec.decode(piece))
        out.append(self.parts[-1].decode(rest))
        return tuple(out)


def pair(a: Scalar[A], b: Scalar[B]) -> KeyCodec[tuple[A, B]]:
    """A two-part key."""
    return Composite(a, b)


def triple(a: Scalar[A], b: Scalar[B], c: Scalar[C]) -> KeyCodec[tuple[A, B, C]]:
    """A three-part key."""
    return Composite(a, b, c)


class ValueCodec(Generic[V]):
    """How a stored value becomes bytes and back."""

    def __init__(self, to_bytes: Callable[[V], bytes], from_bytes: Callable[[bytes], V]) -> None:
        self.encode = to_bytes
        self.decode = from_bytes


def _read_uvarint(raw: bytes) -> Amount:
    r = Reader(raw)
    n = r.uvarint()
    r.finish()
    return Amount(n)


def Record(cls: type[V]) -> ValueCodec[V]:
    """Values of a dataclass in the canonical codec."""
    return ValueCodec(encode, lambda raw: decode(cls, raw))


UVARINT: ValueCodec[int] = ValueCodec(encode_uvarint, _read_uvarint)
RAW: ValueCodec[bytes] = ValueCodec(bytes, bytes)
TEXT: ValueCodec[str] = ValueCodec(str.encode, bytes.decode)


class _Collection:
    """A named part of one module's store; bound to its module by the keeper class it is declared in."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.module = ""

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.module = getattr(owner, "name", "")
        if not self.module:
            raise TypeError(f"{owner.__name__}.{attribute}: collections are declared in a keeper with a `name`")

    def _store(self, ctx: Context) -> PrefixStore:
        return PrefixStore(ctx.store, self.module.encode() + SEPARATOR + self.prefix)


class Item(_Collection, Generic[V]):
    """One value (e.g. the module's params); reads `default` when absent."""

    def __init__(self, key: bytes, value: ValueCodec[V], default: V) -> None:
        super().__init__(key)
        self.value = value
        self.default = default

    def get(self, ctx: Context) -> V:
        """The stored value, or the default."""
        raw = self._store(ctx).get(b"")
        return self.default if raw is None else self.value.decode(raw)

    def set(self, ctx: Context, value: V) -> None:
        """Store a value."""
        self._store(ctx).set(b"", self.value.encode(value))


class UintItem(_Collection):
    """One integer: absent reads 0, writing 0 deletes it."""

    def get(self, ctx: Context) -> Amount:
        """The stored integer (0 if absent)."""
        raw = self._store(ctx).get(b"")
        return Amount(0) if raw is None else _read_uvarint(raw)

    def set(self, ctx: Context, value: int) -> None:
        """Store an integer (0 deletes it)."""
        _set_uint(self._store(ctx), b"", value)


class Map(_Collection, Generic[K, V]):
    """Values by key, iterated in key-byte order."""

    def __init__(self, prefix: bytes, key: KeyCodec[K], value: ValueCodec[V]) -> None:
        super().__init__(prefix)
        self.key = key
        self.value = value

    def get(self, ctx: Context, key: K) -> V | None:
        """The value at `key` (None if absent)."""
        raw = self._store(ctx).get(self.key.encode(key))
        return None if raw is None else self.value.decode(raw)

    def has(self, ctx: Context, key: K) -> bool:
        """Whether `key` holds a value."""
        return self._store(ctx).get(self.key.encode(key)) is not None

    def set(self, ctx: Context, key: K, value: V) -> None:
        """Store `value` at `key`."""
        self._store(ctx).set(self.key.encode(key), self.value.encode(value))

    def remove(self, ctx: Context, key: K) -> None:
        """Delete `key` (recorded as a change even if it was absent)."""
        self._store(ctx).delete(self.key.encode(key))

    def items(self, ctx: Context, prefix: tuple[Any, ...] = ()) -> list[tuple[K, V]]:
        """Every (key, value) whose key starts with the parts `prefix`, in key order."""
        store = self._store(ctx)
        return [(self.key.decode(k), self.value.decode(v)) for k, v in store.iterate(self.key.prefix(prefix))]

    def keys(self, ctx: Context, prefix: tuple[Any, ...] = ()) -> list[K]:
        """Every key that starts with the parts `prefix`, in key order."""
        return [self.key.decode(k) for k, _ in self._store(ctx).iterate(self.key.prefix(prefix))]

    def clear(self, ctx: Context, prefix: tuple[Any, ...] = ()) -> None:
        """Delete every key that starts with the parts `prefix`."""
        store = self._store(ctx)
        for k, _ in list(store.iterate(self.key.prefix(prefix))):
            store.delete(k)


class UintMap(Map[K, Amount]):
    """Integers by key: absent reads 0, writing 0 deletes the key."""

    def __init__(self, prefix: bytes, key: KeyCodec[K]) -> None:
        super().__init__(prefix, key, ValueCodec(encode_uvarint, _read_uvarint))

    def get(self, ctx: Context, key: K) -> Amount:
        """The integer at `key` (0 if absent)."""
        return super().get(ctx, key) or Amount(0)

    def set(self, ctx: Context, key: K, value: int) -> None:
        """Store an integer at `key` (0 deletes it)."""
        _set_uint(self._store(ctx), self.key.encode(key), value)


class KeySet(Map[K, bytes]):
    """A set of keys (stored with empty values), e.g. an index."""

    def __init__(self, prefix: bytes, key: KeyCodec[K]) -> None:
        super().__init__(prefix, key, RAW)

    def add(self, ctx: Context, key: K) -> None:
        """Put `key` in the set."""
        self.set(ctx, key, b"")


def _set_uint(store: PrefixStore, key: bytes, value: int) -> None:
    if value:
        store.set(key, encode_uvarint(value))
    else:
        store.delete(key)


class EscrowIds(Generic[K]):
    """A module's escrow ids in bank (e.g. `req/<request id>`): typed keys for escrows another module holds."""

    def __init__(self, prefix: bytes, key: Scalar[K]) -> None:
        self.prefix = prefix
        self.key = key

    def id(self, key: K) -> bytes:
        """The escrow id of `key`."""
        return self.prefix + self.key.encode(key)

    def parse(self, escrow_id: bytes) -> K | None:
        """The key of an escrow id of this kind (None if it is of another kind)."""
        if not escrow_id.startswith(self.prefix):
            return None
        raw = escrow_id[len(self.prefix) :]
        if self.key.size is not None and len(raw) != self.key.size:
            return None
        return self.key.decode(raw)
