"""Typed queries: one `QuerySpec` per query path, shared by the chain (which answers it) and the client.

A spec names the path (`race/cycle`), how its argument travels in the query's data bytes, and
the response type, which is serialised with `racenet.chain.jsonform`. The chain answers with
that dataclass; `ChainClient.query(spec, arg)` decodes the same dataclass, so a change of shape
is a type error, not a `KeyError` at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from racenet.chain.jsonform import from_json
from racenet.crypto.address import decode_address, encode_address

A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True, eq=False)
class ArgCodec(Generic[A]):
    """How a query's argument is written in its data bytes (text, so `racenet query raw` can send it)."""

    name: str
    encode: Callable[[A], bytes]
    decode: Callable[[bytes], A]


def _decode_hex(data: bytes) -> bytes:
    return bytes.fromhex(data.decode())


NO_ARG: ArgCodec[None] = ArgCodec("none", lambda _: b"", lambda _: None)
ADDRESS_ARG: ArgCodec[bytes] = ArgCodec(
    "bech32 address", lambda a: encode_address(a).encode(), lambda d: decode_address(d.decode())
)
HEX_ARG: ArgCodec[bytes] = ArgCodec("hex", lambda b: b.hex().encode(), _decode_hex)
TEXT_ARG: ArgCodec[str] = ArgCodec("text", str.encode, bytes.decode)


@dataclass(frozen=True)
class QuerySpec(Generic[A, R]):
    """A query path, its argument codec and its response type."""

    path: str
    arg: ArgCodec[A]
    response: Any

    def decode(self, doc: Any) -> R:
        """The response from its JSON form."""
        value: R = from_json(self.response, doc)
        return value


def query(path: str, arg: ArgCodec[A], response: type[R]) -> QuerySpec[A, R]:
    """A query that always answers a `response`."""
    return QuerySpec(path, arg, response)


def optional_query(path: str, arg: ArgCodec[A], response: type[R]) -> QuerySpec[A, R | None]:
    """A query that answers a `response`, or null when there is nothing to show."""
    return QuerySpec(path, arg, response | None)
