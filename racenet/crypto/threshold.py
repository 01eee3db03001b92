"""Threshold BLS on BLS12-381 for the random beacon: Feldman dealings, share keys, partial and group signatures.

Signatures live in G1 (48 bytes), public keys and dealing commitments in G2 (96 bytes); hashing to G1
follows RFC 9380 (`py-arkworks-bls12381`). A BLS signature is unique: for a key and a message there
is exactly one valid signature, so a round's output (the hash of its group signature) is fixed before
anyone signs and no signer, combiner or proposer can pick another.

A dealing is a random polynomial f of degree t-1 (t: the threshold) given by its Feldman commitments
`C_k = f_k·G2` and, for each share index j, `f(j)` encrypted to the holder's beacon key (a G1 point)
with an ephemeral Diffie-Hellman pad. Summing the dealings of the qualified dealers gives the group
key (Σ C_0) and each index's public key (Σ_k C_k·j^k); t partial signatures combine by Lagrange
interpolation at 0 into the group signature. Scalars are plain ints modulo the group order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
"""The prime order r of BLS12-381's groups: every scalar is an int in [0, r)."""
SIGNATURE_DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_racenet-beacon"
POSSESSION_DST = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_racenet-beacon"
DUTY_DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_racenet-check-duty"
"""A node's check-duty signatures (a VRF: unique per message and key, verifiable by anyone)."""
PAD_DOMAIN = b"racenet/beacon-share-pad/v1\x00"
G1_BYTES, G2_BYTES, SCALAR_BYTES = 48, 96, 32


class InvalidPoint(ValueError):
    """Bytes that are not a point of the prime-order subgroup."""


def scalar(value: int) -> Scalar:
    """The library scalar of an int (reduced modulo the group order)."""
    return Scalar.from_le_bytes_mod_order((value % ORDER).to_bytes(SCALAR_BYTES, "little"))


def scalar_from_hash(*parts: bytes) -> int:
    """A scalar derived from SHA-512 of the parts (bias below 2**-250)."""
    digest = hashlib.sha512(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).digest()
    return int.from_bytes(digest, "big") % ORDER


def g1(data: bytes) -> G1Point:
    """Decode a compressed G1 point, checking it is in the subgroup."""
    try:
        return G1Point.from_compressed_bytes(data)
    except ValueError as e:
        raise InvalidPoint(f"not a G1 point: {e}") from e


def g2(data: bytes) -> G2Point:
    """Decode a compressed G2 point, checking it is in the subgroup."""
    try:
        return G2Point.from_compressed_bytes(data)
    except ValueError as e:
        raise InvalidPoint(f"not a G2 point: {e}") from e


def public_key(secret: int) -> bytes:
    """The G1 beacon key of a secret: shares are encrypted to it (48 bytes)."""
    return bytes((G1Point() * scalar(secret)).to_compressed_bytes())


def prove_possession(secret: int, statement: bytes) -> bytes:
    """A G2 signature over `statement` by the beacon key (proof that its holder registered it)."""
    return key_sign(secret, POSSESSION_DST, statement)


def verify_possession(key: bytes, statement: bytes, proof: bytes) -> bool:
    """Whether `proof` is the beacon key's signature over `statement`."""
    return key_verify(key, POSSESSION_DST, statement, proof)


def key_sign(secret: int, dst: bytes, message: bytes) -> bytes:
    """A unique G2 signature (96 bytes) by a node's G1 beacon key over `message` in the domain `dst`."""
    return bytes((G2Point.hash_to_curve(dst, message) * scalar(secret)).to_compressed_bytes())


def key_verify(key: bytes, dst: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is the beacon key's unique signature of `message` in the domain `dst`."""
    try:
        point, signed = g1(key), g2(signature)
    except InvalidPoint:
        return False
    hashed = G2Point.hash_to_curve(dst, message)
    return bool(GT.pairing_check([G1Point(), -point], [signed, hashed]))


@dataclass(frozen=True)
class Polynomial:
    """A dealer's secret polynomial f(x) = Σ coefficients[k]·x^k over the scalar field."""

    coefficients: tuple[int, ...]

    @classmethod
    def derive(cls, seed: bytes, degree: int) -> Polynomial:
        """The polynomial of `degree` whose coefficients hash from a secret seed (re-derivable after a restart)."""
        return cls(tuple(scalar_from_hash(seed, k.to_bytes(4, "big")) for k in range(degree + 1)))

    def at(self, x: int) -> int:
        """f(x) by Horner's rule."""
        value = 0
        for c in reversed(self.coefficients):
            value = (value * x + c) % ORDER
        return value

    def commitments(self) -> tuple[bytes, ...]:
        """The Feldman commitments C_k = f_k·G2."""
        return tuple(bytes((G2Point() * scalar(c)).to_compressed_bytes()) for c in self.coefficients)


def evaluate_commitments(points: Sequence[G2Point], x: int) -> G2Point:
    """Σ_k points[k]·x^k: the G2 image of f(x) for committed f."""
    powers = [pow(x, k, ORDER) for k in range(len(points))]
    return G2Point.multiexp_unchecked(list(points), [scalar(p) for p in powers])


def share_matches(points: Sequence[G2Point], index: int, share: int) -> bool:
    """Whether a share f(index) matches the dealing's commitments."""
    return bool(G2Point() * scalar(share) == evaluate_commitments(points, index))


def share_pad(ephemeral: bytes, dh: bytes, index: int) -> int:
    """The one-time pad of the share for `index` under one Diffie-Hellman secret."""
    digest = hashlib.sha512(PAD_DOMAIN + ephemeral + dh + index.to_bytes(4, "big")).digest()
    return int.from_bytes(digest[:SCALAR_BYTES], "big")


def encrypt_share(ephemeral_secret: int, recipient: bytes, index: int, share: int) -> bytes:
    """f(index) encrypted to a recipient's beacon key (32 bytes); the dealing carries the ephemeral key."""
    ephemeral = bytes((G1Point() * scalar(ephemeral_secret)).to_compressed_bytes())
    dh = bytes((g1(recipient) * scalar(ephemeral_secret)).to_compressed_bytes())
    return (share ^ share_pad(ephemeral, dh, index)).to_bytes(SCALAR_BYTES, "big")


def decrypt_share(secret: int, ephemeral: bytes, index: int, ciphertext: bytes) -> int:
    """The share a dealing encrypted to the holder of `secret` (garbage if the dealer cheated)."""
    dh = bytes((g1(ephemeral) * scalar(secret)).to_compressed_bytes())
    return int.from_bytes(ciphertext, "big") ^ share_pad(ephemeral, dh, index)


def hash_message(message: bytes) -> G1Point:
    """The G1 point a round's message is signed as."""
    return G1Point.hash_to_curve(SIGNATURE_DST, message)


def sign(share: int, message: bytes) -> bytes:
    """A (partial) signature: H(message)·share."""
    return bytes((hash_message(message) * scalar(share)).to_compressed_bytes())


def sign_shares(shares: Mapping[int, int], message: bytes) -> dict[int, bytes]:
    """Partial signatures of one message by several share indices (the message is hashed to G1 once)."""
    point = hash_message(message)
    return {index: bytes((point * scalar(share)).to_compressed_bytes()) for index, share in shares.items()}


def verify(key: G2Point, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is the unique signature of `message` under `key` (a group or share key)."""
    try:
        point = g1(signature)
    except InvalidPoint:
        return False
    return bool(GT.pairing_check([point, -hash_message(message)], [G2Point(), key]))


def lagrange_at_zero(indices: Sequence[int]) -> list[int]:
    """The Lagrange coefficients λ_i with f(0) = Σ λ_i·f(i) for distinct nonzero indices."""
    coefficients = []
    for i in indices:
        numerator, denominator = 1, 1
        for j in indices:
            if j != i:
                numerator = numerator * j % ORDER
                denominator = denominator * (j - i) % ORDER
        coefficients.append(numerator * pow(denominator, -1, ORDER) % ORDER)
    return coefficients


def combine(partials: Mapping[int, bytes], threshold: int) -> bytes:
    """The group signature from `threshold` partial signatures by share index (the lowest indices given)."""
    if len(partials) < threshold:
        raise ValueError(f"{len(partials)} partial signatures, {threshold} needed")
    indices = sorted(partials)[:threshold]
    points = [g1(partials[i]) for i in indices]
    combined = G1Point.multiexp_unchecked(points, [scalar(c) for c in lagrange_at_zero(indices)])
    return bytes(combined.to_compressed_bytes())


def sum_points(points: Sequence[G2Point]) -> G2Point:
    """The sum of G2 points (the identity for none)."""
    total = G2Point.identity()
    for p in points:
        total = total + p
    return total
