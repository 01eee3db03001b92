"""ed25519 keys, account addresses and their bech32 form."""

from __future__ import annotations

from typing import Any

import pytest
from bech32 import (
    CHARSET,
    bech32_encode,
    bech32_hrp_expand,
    bech32_polymod,
    convertbits,
)

from racenet.crypto.address import (
    address_from_pubkey,
    decode_address,
    encode_address,
    module_address,
)
from racenet.crypto.keys import PrivateKey, PublicKey

# RFC 8032, section 7.1, TEST 1 (empty message).
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBKEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
# Computed once from RFC_PUBKEY and pinned: sha256(pubkey)[:20] and its bech32 form.
RFC_ADDRESS = bytes.fromhex("21fe31dfa154a261626bf854046fd2271b7bed4b")
RFC_BECH32 = "race1y8lrrhap2j3xzcntlp2qgm7jyudhhm2t4gg5av"
BECH32M_CONST = 0x2BC830A3  # BIP-350


def _bech32(hrp: str, data: bytes) -> str:
    words = convertbits(data, 8, 5)
    assert words is not None
    return str(bech32_encode(hrp, words))


def test_rfc8032_vector() -> None:
    key = PrivateKey(RFC_SEED)
    assert key.seed == RFC_SEED
    assert key.public_key == PublicKey(RFC_PUBKEY)
    assert key.sign(b"") == RFC_SIGNATURE
    assert key.public_key.verify(b"", RFC_SIGNATURE)


def test_sign_and_verify() -> None:
    key = PrivateKey.generate()
    signature = key.sign(b"transfer 5 race")
    assert len(signature) == 64
    assert key.public_key.verify(b"transfer 5 race", signature)
    assert not key.public_key.verify(b"transfer 6 race", signature)
    assert not PrivateKey.generate().public_key.verify(b"transfer 5 race", signature)
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not key.public_key.verify(b"transfer 5 race", tampered)


def test_generated_keys_differ_and_round_trip_through_seed() -> None:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    assert a.seed != b.seed
    assert PrivateKey(a.seed).public_key == a.public_key


@pytest.mark.parametrize(
    ("msg", "sig"),
    [
        (b"m", b""),
        (b"m", b"\x00" * 63),
        (b"m", b"\x00" * 65),
        (b"m", b"\xff" * 64),
        (b"m", None),
        (b"m", "x" * 64),
        (None, b"\x00" * 64),
        ("m", b"\x00" * 64),
    ],
)
def test_verify_returns_false_on_garbage(msg: Any, sig: Any) -> None:
    assert PrivateKey.generate().public_key.verify(msg, sig) is False


def test_verify_needs_a_detached_signature() -> None:
    key = PrivateKey.generate()
    attached: Any = None  # libsodium would read the message as signature + message
    assert not key.public_key.verify(key.sign(b"m") + b"m", attached)


def test_verify_with_invalid_curve_point_returns_false() -> None:
    assert PublicKey(b"\xff" * 32).verify(b"", RFC_SIGNATURE) is False


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_key_sizes_are_checked(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PublicKey(b"\x01" * size)
    with pytest.raises(ValueError, match="32 bytes"):
        PrivateKey(b"\x01" * size)


def test_private_key_repr_hides_seed() -> None:
    key = PrivateKey(RFC_SEED)
    assert RFC_SEED.hex() not in repr(key)
    assert RFC_PUBKEY.hex() in repr(key)


def test_address_known_answer() -> None:
    assert address_from_pubkey(RFC_PUBKEY) == RFC_ADDRESS
    assert PublicKey(RFC_PUBKEY).address == RFC_ADDRESS
    assert encode_address(RFC_ADDRESS) == RFC_BECH32


def test_address_from_pubkey_checks_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        address_from_pubkey(b"\x00" * 33)


def test_bech32_round_trip() -> None:
    for addr in (bytes(20), b"\xff" * 20, RFC_ADDRESS, PrivateKey.generate().public_key.address):
        text = encode_address(addr)
        assert text.startswith("race1")
        assert decode_address(text) == addr
        assert decode_address(text.upper()) == addr


def test_encode_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        encode_address(bytes(19))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (_bech32("cosmos", RFC_ADDRESS), "prefix is 'cosmos', expected 'race'"),
        (RFC_BECH32[:-1] + "q", "bad checksum"),
        (RFC_BECH32[:10] + RFC_BECH32[11] + RFC_BECH32[10] + RFC_BECH32[12:], "bad checksum"),
        ("race1" + RFC_BECH32[5:].upper(), "mixed upper and lower case"),
        (_bech32("race", bytes(19)), "does not encode 20 bytes"),
        (_bech32("race", bytes(32)), "does not encode 20 bytes"),
        ("race" + RFC_BECH32[5:], "missing '1' separator"),
        ("", "missing '1' separator"),
        ("race1abc", "too short"),
        ("race1b" + RFC_BECH32[6:], "invalid bech32 character"),
        ("race1 " + RFC_BECH32[6:], "outside printable ASCII"),
    ],
)
def test_decode_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_address(text)


def test_bech32m_checksum_is_rejected() -> None:
    words = convertbits(RFC_ADDRESS, 8, 5)
    assert words is not None
    polymod = bech32_polymod(bech32_hrp_expand("race") + words + [0] * 6) ^ BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    bech32m = "race1" + "".join(CHARSET[d] for d in words + checksum)
    with pytest.raises(ValueError, match="bad checksum"):
        decode_address(bech32m)


def test_module_address_is_deterministic_and_distinct() -> None:
    assert module_address("bank") == module_address("bank")
    assert len(module_address("bank")) == 20
    assert module_address("bank") != module_address("escrow")
    assert module_address("bank").hex() == "8c3d40e6f81e13296b7494a468f7be02a0a759ca"


def test_bech32_matches_reference_implementation() -> None:
    """Our table-driven bech32 agrees with the BIP-173 reference package on random data."""
    import random

    from racenet.crypto import bech32 as ours

    rng = random.Random(7)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        hrp = rng.choice(["race", "cosmos", "bc", "a"])
        expected = bech32_encode(hrp, convertbits(data, 8, 5))
        assert ours.encode(hrp, data) == expected
        assert ours.decode(expected) == (hrp, data)
