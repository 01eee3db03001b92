"""Account addresses: the first 20 bytes of sha256(ed25519 public key), shown as bech32 `race1…`.

The string form is BIP-173 bech32 (not bech32m), as in the Cosmos SDK, so the usual tools
read it; only the human-readable prefix differs.
"""

from __future__ import annotations

import hashlib

from racenet.crypto import bech32

HRP = "race"
ADDRESS_SIZE = 20
PUBLIC_KEY_SIZE = 32


def address_from_pubkey(pub: bytes) -> bytes:
    """The 20-byte account address of an ed25519 public key (truncated sha256, like Cosmos)."""
    if len(pub) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(pub)}")
    return hashlib.sha256(pub).digest()[:ADDRESS_SIZE]


def module_address(name: str) -> bytes:
    """The address of a module account (e.g. an escrow): derived from its name; no key owns it."""
    return hashlib.sha256(b"module/" + name.encode("utf-8")).digest()[:ADDRESS_SIZE]


def encode_address(addr20: bytes) -> str:
    """The bech32 string (`race1…`) of a 20-byte address, for display and user input."""
    if len(addr20) != ADDRESS_SIZE:
        raise ValueError(f"an address is {ADDRESS_SIZE} bytes, got {len(addr20)}")
    return bech32.encode(HRP, addr20)


def decode_address(s: str) -> bytes:
    """Parse a `race1…` string back to its 20 bytes; ValueError says what is wrong with it."""
    try:
        hrp, data = bech32.decode(s)
    except ValueError as e:
        raise ValueError(f"invalid address {s!r}: {e}") from None
    if hrp != HRP:
        raise ValueError(f"invalid address {s!r}: prefix is {hrp!r}, expected {HRP!r}")
    if len(data) != ADDRESS_SIZE:
        raise ValueError(f"invalid address {s!r}: it does not encode {ADDRESS_SIZE} bytes")
    return data
