"""The canonical encoding: one byte string per value, everything else rejected."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from racenet.chain.codec import MAX_U64, DecodeError, decode, encode, encode_uvarint
from racenet.chain.modules.bank import MsgSend
from racenet.chain.tx import AnyMsg, SignedTx, TxBody, build_tx
from tests.chain import key


@dataclass(frozen=True)
class Sample:
    n: int
    flag: bool
    blob: bytes
    text: str
    items: tuple[int, ...]


def test_known_encoding() -> None:
    assert encode(Sample(300, True, b"\xff", "é", (1, 2))) == bytes.fromhex("ac0201" + "01ff" + "02c3a9" + "020102")


def test_varint_boundaries() -> None:
    assert encode_uvarint(0) == b"\x00"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(MAX_U64) == b"\xff" * 9 + b"\x01"
    with pytest.raises(ValueError):
        encode_uvarint(MAX_U64 + 1)
    with pytest.raises(ValueError):
        encode_uvarint(-1)


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("8000" + "00" + "00" + "00" + "00", "non-minimal"),
        ("ac0201" + "01ff" + "02c3a9" + "020102" + "00", "trailing"),
        ("ac0202" + "01ff" + "02c3a9" + "020102", "bool"),
        ("ac0201" + "09ff" + "02c3a9" + "020102", "length exceeds"),
        ("ac0201" + "01ff" + "02c328" + "020102", "UTF-8"),
        ("ac8000" + "01ff" + "02c3a9" + "020102", "non-minimal"),
        ("ffffffffffffffffff02", "exceeds u64"),
        ("ac0201" + "01ff" + "02c3a9" + "ff0102", "list length"),
    ],
)
def test_rejects_non_canonical(raw: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(Sample, bytes.fromhex(raw))


@given(
    st.builds(
        Sample,
        st.integers(0, MAX_U64),
        st.booleans(),
        st.binary(max_size=64),
        st.text(max_size=32),
        st.lists(st.integers(0, MAX_U64), max_size=8).map(tuple),
    )
)
def test_round_trip(value: Sample) -> None:
    assert decode(Sample, encode(value)) == value


def test_transfer_bytes_are_pinned() -> None:
    """The same transfer signs to the same bytes on every machine (ed25519 is deterministic)."""
    raw = build_tx(key(1), "racenet-test", 5, 1000, [MsgSend(b"\x02" * 20, 7)], memo="hi")
    tx = decode(SignedTx, raw)
    assert tx.body == TxBody("racenet-test", 5, 1000, "hi", (AnyMsg("bank/Send", b"\x14" + b"\x02" * 20 + b"\x07"),))
    assert raw.hex()[:60] == "010c726163656e65742d7465737405e807026869010962616e6b2f53656e"
    assert len(raw) == 1 + 13 + 1 + 2 + 3 + 1 + 10 + 23 + 33 + 65
