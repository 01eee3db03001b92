"""The Race model: the keystream spec, bitwise determinism, batch invariance, seeds, parameter counts."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys

import numpy as np
import torch
from nacl.bindings import randombytes_buf_deterministic

from racenet.pow.model import RaceTransformer, build_model
from racenet.pow.presets import PAPER, PRESETS, TINY
from racenet.pow.race import build_race
from racenet.pow.rng import chunk_key, uniform_chunk

SEED = bytes(range(32))
MASK = 0xFFFFFFFF


def chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """RFC 8439 ChaCha20 block function, written out to pin what the weights' keystream is."""

    def rotl(v: int, c: int) -> int:
        return ((v << c) & MASK) | (v >> (32 - c))

    def quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & MASK
        s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & MASK
        s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & MASK
        s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & MASK
        s[b] = rotl(s[b] ^ s[c], 7)

    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key), counter]
    state += struct.unpack("<3I", nonce)
    w = list(state)
    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15)):
            quarter(w, a, b, c, d)
        for a, b, c, d in ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            quarter(w, a, b, c, d)
    return struct.pack("<16I", *((x + y) & MASK for x, y in zip(w, state, strict=True)))


def weights_digest(model: torch.nn.Module) -> str:
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()


def test_keystream_is_chacha20_with_the_libsodium_nonce() -> None:
    key = chunk_key(SEED, "blocks.0.attn.qkv.weight", 3)
    expected = chacha20_block(key, 0, b"LibsodiumDRG") + chacha20_block(key, 1, b"LibsodiumDRG")
    assert randombytes_buf_deterministic(128, key) == expected


def test_values_follow_the_documented_integer_to_float_map() -> None:
    key, bound, row = chunk_key(SEED, "w", 0), 0.25, 4
    words = struct.unpack("<16I", randombytes_buf_deterministic(64, key))
    ints = [(w >> 8) - (1 << 23) for w in words]
    out = np.empty(16, dtype=np.float32)
    uniform_chunk(key, out, bound, row)
    for i, k in enumerate(ints):
        mean = np.float32(sum(ints[i - i % row : i - i % row + row]) / row)
        assert out[i] == (np.float32(k) - mean) * np.float32(bound * 2.0**-23)
    assert abs(float(out.reshape(-1, row).sum(axis=1).max())) < 1e-6


def test_same_seed_gives_bitwise_identical_weights_and_outputs_in_another_process() -> None:
    torch.set_num_threads(2)
    race = build_race("tiny", SEED)
    tokens = torch.arange(64 * TINY.seq_len).view(64, TINY.seq_len) % TINY.vocab_size
    here = weights_digest(race.model), hashlib.sha256(race.outputs(tokens).numpy().tobytes()).hexdigest()
    script = (
        "import hashlib, torch\n"
        "torch.set_num_threads(2)\n"
        "from racenet.pow.race import build_race\n"
        "from tests.test_pow_model import SEED, weights_digest\n"
        "race = build_race('tiny', SEED)\n"
        "t = torch.arange(64 * 4).view(64, 4) % race.preset.vocab_size\n"
        "print(weights_digest(race.model), hashlib.sha256(race.outputs(t).numpy().tobytes()).hexdigest())\n"
    )
    there = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert tuple(there) == here


def test_a_nonce_output_does_not_depend_on_its_batch() -> None:
    race = build_race("tiny", SEED)
    tokens = torch.randint(0, TINY.vocab_size, (256, TINY.seq_len), generator=torch.Generator().manual_seed(1))
    full = race.outputs(tokens)
    assert torch.equal(torch.cat([race.outputs(tokens[i : i + 64]) for i in range(0, 256, 64)]), full)
    assert torch.equal(torch.cat([race.outputs(tokens[i : i + 1]) for i in range(64)]), full[:64])


def test_different_seeds_give_different_weights() -> None:
    a, b = build_model(TINY, SEED), build_model(TINY, bytes(32))
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert (pa != pb).float().mean() > 0.99, name


def test_parameter_counts() -> None:
    with torch.device("meta"):
        paper = RaceTransformer(PAPER)
    assert sum(p.numel() for p in paper.parameters()) == PAPER.n_params == 608_176_128
    for preset in PRESETS.values():
        with torch.device("meta"):
            model = RaceTransformer(preset)
        assert sum(p.numel() for p in model.parameters()) == preset.n_params


def test_race_seed_must_be_32_bytes() -> None:
    try:
        build_race("tiny", b"short")
    except ValueError as e:
        assert "32 bytes" in str(e)
    else:
        raise AssertionError("a short race seed was accepted")
