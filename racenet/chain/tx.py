"""Signed transactions: canonical wire format, sign bytes, and strict decoding.

Wire format (racenet codec): `SignedTx(version=1, body, pub_key, signature)`. The
signature covers `SignDoc(pub_key, body)`, i.e. every field but itself: chain id,
sequence (replay protection), fee, memo and messages. A transaction's hash is the
SHA-256 of its bytes, as in CometBFT.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from racenet.chain.codec import DecodeError, decode, encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Msg
from racenet.crypto.keys import PrivateKey

TX_VERSION = 1
SIGN_DOMAIN = b"racenet/tx/v1\x00"


@dataclass(frozen=True)
class AnyMsg:
    """A message on the wire: its type name and canonical bytes."""

    type: str
    value: bytes


@dataclass(frozen=True)
class TxBody:
    """Everything a signer commits to."""

    chain_id: str
    sequence: int
    fee: int
    memo: str
    msgs: tuple[AnyMsg, ...]


@dataclass(frozen=True)
class SignDoc:
    """The exact structure whose encoding is signed."""

    pub_key: bytes
    body: TxBody


@dataclass(frozen=True)
class SignedTx:
    """A transaction as broadcast: version, body, signer's public key and signature."""

    version: int
    body: TxBody
    pub_key: bytes
    signature: bytes


@dataclass(frozen=True)
class VerifiedTx:
    """A transaction whose signature verified and whose messages decoded."""

    tx: SignedTx
    msgs: tuple[Msg, ...]


class VerifiedCache:
    """Transactions already verified and decoded, by their bytes, within a byte budget.

    Mempool, proposal and block see the same bytes; only transactions whose signature verified
    get in, so garbage costs its sender a rejection and the node no memory.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.entries: OrderedDict[bytes, VerifiedTx] = OrderedDict()

    def get(self, raw: bytes) -> VerifiedTx | None:
        """The verified transaction with these bytes, if cached."""
        hit = self.entries.get(raw)
        if hit is not None:
            self.entries.move_to_end(raw)
        return hit

    def put(self, raw: bytes, verified: VerifiedTx) -> None:
        """Remember a verified transaction, evicting the least recently used beyond the budget."""
        if raw in self.entries or len(raw) > self.budget:
            return
        self.entries[raw] = verified
        self.used += len(raw)
        while self.used > self.budget:
            old, _ = self.entries.popitem(last=False)
            self.used -= len(old)


def sign_bytes(pub_key: bytes, body: TxBody) -> bytes:
    """The bytes an account signs for `body`."""
    return SIGN_DOMAIN + encode(SignDoc(pub_key, body))


def tx_hash(raw: bytes) -> bytes:
    """CometBFT's transaction hash: SHA-256 of the raw bytes."""
    return hashlib.sha256(raw).digest()


def build_tx(key: PrivateKey, chain_id: str, sequence: int, fee: int, msgs: Sequence[Msg], memo: str = "") -> bytes:
    """Encode and sign a transaction carrying `msgs`."""
    body = TxBody(chain_id, sequence, fee, memo, tuple(AnyMsg(m.TYPE, encode(m)) for m in msgs))
    pub = key.public_key.raw
    return encode(SignedTx(TX_VERSION, body, pub, key.sign(sign_bytes(pub, body))))


def check_size(raw: bytes, max_bytes: int) -> None:
    """The auth limit on a transaction's bytes (checked at every delivery: governance may have lowered it since
    the bytes were first decoded and cached)."""
    if len(raw) > max_bytes:
        raise ChainError(Code.TX_TOO_LARGE, f"transaction is {len(raw)} bytes, limit {max_bytes}")


def check_message_count(tx: SignedTx, max_msgs: int) -> None:
    """The auth limit on a transaction's messages (checked at every delivery, like `check_size`)."""
    if not 0 < len(tx.body.msgs) <= max_msgs:
        raise ChainError(Code.MALFORMED_TX, f"a transaction carries 1 to {max_msgs} messages")


def decode_envelope(raw: bytes, registry: Mapping[str, type[Msg]], max_bytes: int, max_msgs: int) -> SignedTx:
    """Decode a transaction's envelope and check it statelessly, leaving its messages as bytes.

    Cheap on purpose: the signature is checked (by the ante) before any message is decoded.
    """
    check_size(raw, max_bytes)
    try:
        tx = decode(SignedTx, raw)
    except DecodeError as e:
        raise ChainError(Code.MALFORMED_TX, f"malformed transaction: {e}") from e
    if tx.version != TX_VERSION:
        raise ChainError(Code.MALFORMED_TX, f"unsupported transaction version {tx.version}")
    if len(tx.pub_key) != 32 or len(tx.signature) != 64:
        raise ChainError(Code.MALFORMED_TX, "public key must be 32 bytes and signature 64 bytes")
    check_message_count(tx, max_msgs)
    unknown = next((m.type for m in tx.body.msgs if m.type not in registry), None)
    if unknown is not None:
        raise ChainError(Code.UNKNOWN_MESSAGE, f"unknown message type {unknown!r}")
    return tx


def decode_messages(tx: SignedTx, registry: Mapping[str, type[Msg]]) -> tuple[Msg, ...]:
    """The envelope's messages as typed dataclasses, each statelessly validated."""
    return tuple(_decode_msg(m, registry[m.type]) for m in tx.body.msgs)


def _decode_msg(any_msg: AnyMsg, cls: type[Msg]) -> Msg:
    try:
        msg = decode(cls, any_msg.value)
    except DecodeError as e:
        raise ChainError(Code.MALFORMED_TX, f"malformed {any_msg.type}: {e}") from e
    msg.validate()
    return msg
