"""Canonical binary encoding: the same value gives the same bytes on every machine.

A value is a frozen dataclass whose fields are `int` or `Amount` (unsigned, < 2**64, minimal
LEB128 varint), `bool` (one byte 0/1), `bytes`, `str` (UTF-8) or a `StrEnum` (its value as a
string), a nested dataclass, or `tuple[X, ...]` of those. Fields are written in declaration order with no tags,
so there is exactly one encoding per value; the decoder rejects anything else
(non-minimal varints, overlong lengths, invalid UTF-8, trailing bytes).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from racenet.chain.scalars import MAX_AMOUNT, Amount

MAX_U64 = MAX_AMOUNT

T = TypeVar("T")


class DecodeError(ValueError):
    """The bytes are not the canonical encoding of the expected type."""


_SMALL = tuple(bytes((i,)) for i in range(0x80))


def encode_uvarint(n: int) -> bytes:
    """Minimal unsigned LEB128 encoding of an integer in [0, 2**64)."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if not 0 <= n <= MAX_U64:
        raise ValueError(f"integer {n} out of range for u64")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Reader:
    """A cursor over bytes that enforces canonical forms while decoding."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uvarint(self) -> int:
        """Read a minimal LEB128 varint that fits in 64 bits."""
        shift = 0
        value = 0
        while True:
            if self.pos >= len(self.data):
                raise DecodeError("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if byte == 0 and shift > 0:
                    raise DecodeError("non-minimal varint")
                break
            shift += 7
            if shift > 63:
                raise DecodeError("varint too long")
        if value > MAX_U64:
            raise DecodeError("varint exceeds u64")
        return value

    def take(self, n: int) -> bytes:
        """Read exactly n raw bytes."""
        if n > len(self.data) - self.pos:
            raise DecodeError("length exceeds remaining bytes")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def finish(self) -> None:
        """Insist that every byte was consumed."""
        if self.pos != len(self.data):
            raise DecodeError(f"{len(self.data) - self.pos} trailing bytes")


Encoder = Callable[[Any, bytearray], None]
Decoder = Callable[[Reader], Any]


def _encode_int(v: int, out: bytearray) -> None:
    out += encode_uvarint(v)


def _encode_bool(v: bool, out: bytearray) -> None:
    out.append(1 if v else 0)


def _encode_bytes(v: bytes, out: bytearray) -> None:
    out += encode_uvarint(len(v))
    out += v


def _encode_str(v: str, out: bytearray) -> None:
    _encode_bytes(v.encode("utf-8"), out)


def _decode_bool(r: Reader) -> bool:
    b = r.take(1)[0]
    if b > 1:
        raise DecodeError("bool must be 0 or 1")
    return b == 1


def _decode_bytes(r: Reader) -> bytes:
    return r.take(r.uvarint())


def _decode_str(r: Reader) -> str:
    try:
        return _decode_bytes(r).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError("invalid UTF-8") from e


def _decode_amount(r: Reader) -> Amount:
    return Amount(r.uvarint())


_PRIMITIVES: dict[Any, tuple[Encoder, Decoder]] = {
    int: (_encode_int, Reader.uvarint),
    Amount: (_encode_int, _decode_amount),
    bool: (_encode_bool, _decode_bool),
    bytes: (_encode_bytes, _decode_bytes),
    str: (_encode_str, _decode_str),
}


_CODECS: dict[Any, tuple[Encoder, Decoder]] = dict(_PRIMITIVES)


def _codec(tp: Any) -> tuple[Encoder, Decoder]:
    """Encoder and decoder for a supported type, built once per type."""
    if tp not in _CODECS:
        if typing.get_origin(tp) is tuple:
            _CODECS[tp] = _tuple_codec(typing.get_args(tp)[0])
        elif dataclasses.is_dataclass(tp) and isinstance(tp, type):
            _CODECS[tp] = _dataclass_codec(tp)
        elif isinstance(tp, type) and issubclass(tp, StrEnum):
            _CODECS[tp] = _enum_codec(tp)
        else:
            raise TypeError(f"type {tp!r} has no canonical encoding")
    return _CODECS[tp]


def _tuple_codec(item: Any) -> tuple[Encoder, Decoder]:
    enc_item, dec_item = _codec(item)

    def enc(v: tuple[Any, ...], out: bytearray) -> None:
        out += encode_uvarint(len(v))
        for x in v:
            enc_item(x, out)

    def dec(r: Reader) -> tuple[Any, ...]:
        n = r.uvarint()
        if n > len(r.data) - r.pos:
            raise DecodeError("list length exceeds remaining bytes")
        return tuple(dec_item(r) for _ in range(n))

    return enc, dec


def _enum_codec(cls: type[StrEnum]) -> tuple[Encoder, Decoder]:
    def dec(r: Reader) -> StrEnum:
        text = _decode_str(r)
        try:
            return cls(text)
        except ValueError as e:
            raise DecodeError(f"{text!r} is not a {cls.__name__}") from e

    return _encode_str, dec


def _dataclass_codec(cls: type) -> tuple[Encoder, Decoder]:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, *_codec(hints[f.name])) for f in dataclasses.fields(cls)]

    def enc(v: Any, out: bytearray) -> None:
        for name, enc_field, _ in fields:
            enc_field(getattr(v, name), out)

    def dec(r: Reader) -> Any:
        return cls(**{name: dec_field(r) for name, _, dec_field in fields})

    return enc, dec


def encode(value: Any) -> bytes:
    """Canonical bytes of a dataclass value (or any supported value)."""
    out = bytearray()
    _codec(type(value))[0](value, out)
    return bytes(out)


def decode(tp: type[T], data: bytes) -> T:
    """Decode exactly one value of type `tp`; any deviation raises DecodeError."""
    r = Reader(data)
    value: T = _codec(tp)[1](r)
    r.finish()
    return value
