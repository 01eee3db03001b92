"""The JSON form of chain values: query answers, genesis state and exports, read and written by type.

One function each way, driven by the dataclass's type hints, so the chain, the node and the
CLI share the same classes and never index into dicts by string. In JSON an `Address` is
bech32 (`race1…`), other bytes are hex, a `StrEnum` is its value, a tuple is a list and a
dataclass is an object with every field. Reading is strict: unknown or mistyped fields are a
`ValueError` that names the field's path (e.g. `balances[0].amount`); integers are unsigned
and below 2**64; a missing field takes its default.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from enum import StrEnum
from typing import Any, TypeVar

from racenet.chain.scalars import BECH32, MAX_AMOUNT, Amount
from racenet.crypto.address import decode_address, encode_address

T = TypeVar("T")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def to_json(value: Any, tp: Any = None) -> Any:
    """The JSON-serialisable form of a chain value (of type `tp`, or its own type)."""
    tp = type(value) if tp is None else tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        if value is not None and BECH32 in args[1:]:
            return encode_address(value) if value else ""  # empty: not set yet (an unrouted request's executor)
        return to_json(value, args[0])
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        return to_json(value, next(a for a in args if a is not type(None)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = _hints(type(value))
        return {f.name: to_json(getattr(value, f.name), hints[f.name]) for f in dataclasses.fields(value)}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        item = args[0] if args and origin in (tuple, list) else None
        return [to_json(v, item) for v in value]
    if isinstance(value, dict):
        key_type, value_type = args if args else (None, None)
        return {str(to_json(k, key_type)): to_json(v, value_type) for k, v in value.items()}
    return value


def from_json(tp: type[T], doc: Any, path: str = "") -> T:
    """Read a value of type `tp` from its JSON form; ValueError names the first bad field."""
    result: T = _read(tp, doc, path)
    return result


def _read(tp: Any, doc: Any, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        if BECH32 in args[1:]:
            if not isinstance(doc, str):
                raise _bad(path, "a bech32 address", doc)
            if not doc:
                return b""
            try:
                return decode_address(doc)
            except ValueError as e:
                raise ValueError(f"{_at(path)}{e}") from None
        return _read(args[0], doc, path)
    if origin in (typing.Union, types.UnionType):
        if doc is None and type(None) in args:
            return None
        return _read(next(a for a in args if a is not type(None)), doc, path)
    if origin is tuple:
        if not isinstance(doc, list):
            raise _bad(path, "a list", doc)
        return tuple(_read(args[0], item, f"{path}[{i}]") for i, item in enumerate(doc))
    if origin is dict:
        if not isinstance(doc, dict):
            raise _bad(path, "an object", doc)
        return {_read(args[0], k, f"{path}.{k}"): _read(args[1], v, f"{path}.{k}") for k, v in doc.items()}
    if dataclasses.is_dataclass(tp):
        return _read_dataclass(tp, doc, path)
    if tp in (int, Amount):
        if isinstance(doc, bool) or not isinstance(doc, int) or not 0 <= doc <= MAX_AMOUNT:
            raise _bad(path, "a non-negative integer below 2**64", doc)
        return tp(doc)
    if tp is bool:
        if not isinstance(doc, bool):
            raise _bad(path, "true or false", doc)
        return doc
    if tp is str:
        if not isinstance(doc, str):
            raise _bad(path, "a string", doc)
        return doc
    if tp is bytes:
        if not isinstance(doc, str):
            raise _bad(path, "a hex string", doc)
        try:
            return bytes.fromhex(doc)
        except ValueError:
            raise _bad(path, "a hex string", doc) from None
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        try:
            return tp(doc)
        except ValueError:
            raise _bad(path, f"one of {', '.join(m.value for m in tp)}", doc) from None
    raise TypeError(f"{tp!r} has no JSON form")


def _read_dataclass(cls: Any, doc: Any, path: str) -> Any:
    if not isinstance(doc, dict):
        raise _bad(path, f"an object ({cls.__name__})", doc)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise ValueError(f"{_at(path)}unknown {cls.__name__} field(s): {', '.join(unknown)}")
    hints = _hints(cls)
    values = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name in doc:
            values[name] = _read(hints[name], doc[name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: missing")
    return cls(**values)


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def _bad(path: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"{_at(path)}expected {expected}, got {got!r}")
