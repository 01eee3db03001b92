"""ed25519 signing keys for accounts and nodes (libsodium through PyNaCl)."""

from __future__ import annotations

from dataclasses import dataclass

import nacl.utils
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from racenet.crypto.address import PUBLIC_KEY_SIZE, address_from_pubkey

SEED_SIZE = 32
SIGNATURE_SIZE = 64


@dataclass(frozen=True)
class PublicKey:
    """An ed25519 public key: verifies signatures and names the account that owns it."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != PUBLIC_KEY_SIZE:
            raise ValueError(f"an ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(self.raw)}")

    @property
    def address(self) -> bytes:
        """The 20-byte account address of this key."""
        return address_from_pubkey(self.raw)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether `sig` is this key's signature of `msg`; False (never raises) on bad input."""
        if not isinstance(msg, bytes) or not isinstance(sig, bytes) or len(sig) != SIGNATURE_SIZE:
            return False
        try:
            VerifyKey(self.raw).verify(msg, sig)
        except CryptoError:
            return False
        return True


class PrivateKey:
    """An ed25519 signing key held as its 32-byte seed; its repr never shows the seed."""

    __slots__ = ("_signing_key",)

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        self._signing_key = SigningKey(seed)

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh key from the operating system's random source."""
        return cls(nacl.utils.random(SEED_SIZE))

    @property
    def seed(self) -> bytes:
        """The 32-byte seed: everything needed to rebuild this key (keep it secret)."""
        return bytes(self._signing_key)

    @property
    def public_key(self) -> PublicKey:
        """The matching public key."""
        return PublicKey(bytes(self._signing_key.verify_key))

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte detached ed25519 signature of `msg`."""
        return bytes(self._signing_key.sign(msg).signature)

    def __repr__(self) -> str:
        return f"PrivateKey(public_key={self.public_key.raw.hex()})"
