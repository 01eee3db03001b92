"""Signed transactions: canonical wire format, sign bytes, and strict decoding.

Wire format (racenet codec): `SignedTx(version=1, body, pub_key, signature)`. The
signature covers `SignDoc(pub_key, body)`, i.e. every field but itself: chain id,
sequence (replay protection), fee, memo and messages. A transaction's hash is the
SHA-256 of its bytes, as in CometBFT.
"""

from __future__ import annotations

import hashlib
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
class DecodedTx:
    """A decoded transaction with its messages resolved to typed dataclasses."""

    tx: SignedTx
    msgs: tuple[Msg, ...]
    hash: bytes


def sign_bytes(pub_key: bytes, body: TxBody) -> bytes:
    """The bytes an account signs for `body`."""
    return SIGN_DOMAIN + encode(SignDoc(pub_key, body))


def tx_hash(raw: bytes) -> bytes:
    """CometBFT's transaction hash: SHA-256 of the raw bytes."""
    return hashlib.sha256(raw).digest()


def build_tx(key: PrivateKey, chain_id: str, sequence: int, fee: int, msgs: list[Msg], memo: str = "") -> bytes:
    """Encode and sign a transaction carrying `msgs`."""
    body = TxBody(chain_id, sequence, fee, memo, tuple(AnyMsg(m.TYPE, encode(m)) for m in msgs))
    pub = key.public_key.raw
    return encode(SignedTx(TX_VERSION, body, pub, key.sign(sign_bytes(pub, body))))


def decode_tx(raw: bytes, registry: dict[str, type[Msg]], max_bytes: int) -> DecodedTx:
    """Decode and statelessly check a transaction; raise ChainError with the reason."""
    if len(raw) > max_bytes:
        raise ChainError(Code.TX_TOO_LARGE, f"transaction is {len(raw)} bytes, limit {max_bytes}")
    try:
        tx = decode(SignedTx, raw)
    except DecodeError as e:
        raise ChainError(Code.MALFORMED_TX, f"malformed transaction: {e}") from e
    if tx.version != TX_VERSION:
        raise ChainError(Code.MALFORMED_TX, f"unsupported transaction version {tx.version}")
    if len(tx.pub_key) != 32 or len(tx.signature) != 64:
        raise ChainError(Code.MALFORMED_TX, "public key must be 32 bytes and signature 64 bytes")
    if not tx.body.msgs:
        raise ChainError(Code.MALFORMED_TX, "transaction has no messages")
    msgs = tuple(_decode_msg(m, registry) for m in tx.body.msgs)
    return DecodedTx(tx, msgs, tx_hash(raw))


def _decode_msg(any_msg: AnyMsg, registry: dict[str, type[Msg]]) -> Msg:
    cls = registry.get(any_msg.type)
    if cls is None:
        raise ChainError(Code.UNKNOWN_MESSAGE, f"unknown message type {any_msg.type!r}")
    try:
        msg = decode(cls, any_msg.value)
    except DecodeError as e:
        raise ChainError(Code.MALFORMED_TX, f"malformed {any_msg.type}: {e}") from e
    msg.validate()
    return msg
