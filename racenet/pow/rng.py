"""The counter-based generator that turns a race seed into model weights.

A parameter tensor is read as rows of `row` values (`row` = fan-in for a linear weight, whose rows are centred;
1 otherwise) and cut into chunks of whole rows, about `CHUNK` values each. Chunk i of parameter `name` is

    key    = BLAKE2b-256(race seed || i as u64 little-endian || name), personalisation "racenet-weights"
    words  = ChaCha20-IETF keystream(key, nonce = b"LibsodiumDRG", counter from 0), read as u32 little-endian
    k      = (word >> 8) - 2^23                  an integer uniform on [-2^23, 2^23), exact in float32
    mean   = float32(float64(sum of k over its row) / row)          (0 when row = 1)
    value  = (float32(k) - mean) * float32(bound * 2^-23)          in float32 arithmetic

The keystream is libsodium's `randombytes_buf_deterministic`, a documented, platform-independent ChaCha20
stream that any ChaCha20 implementation reproduces. Chunks are independent, so they are generated in parallel
(libsodium and numpy release the GIL) and any device builds bitwise-identical weights: the row sum is exact integer
arithmetic and the float steps are single IEEE operations (no libm function, no float reduction whose
order could differ between platforms). Values are uniform on [-bound, bound): the model's init distribution is
uniform with std bound / sqrt(3) (a normal distribution would need log and cos).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from nacl.bindings import randombytes_buf_deterministic

CHUNK = 1 << 20
SEED_SIZE = 32


def chunk_key(race_seed: bytes, name: str, chunk_index: int) -> bytes:
    """The 32-byte ChaCha20 key of one chunk of one parameter: binds race seed, parameter name and chunk."""
    if len(race_seed) != SEED_SIZE:
        raise ValueError(f"a race seed is {SEED_SIZE} bytes, got {len(race_seed)}")
    message = race_seed + chunk_index.to_bytes(8, "little") + name.encode()
    return hashlib.blake2b(message, digest_size=32, person=b"racenet-weights").digest()


def uniform_chunk(key: bytes, out: np.ndarray, bound: float, row: int = 1) -> None:
    """Fill float32 `out` with values uniform on [-bound, bound) from the keystream of `key`, rows of `row` centred."""
    words = np.frombuffer(randombytes_buf_deterministic(4 * out.size, key), dtype="<u4")
    ints = (words >> np.uint32(8)).view(np.int32)
    ints -= np.int32(1 << 23)
    out[...] = ints
    if row > 1:
        means = ints.reshape(-1, row).sum(axis=1, dtype=np.int64, keepdims=True) / row
        out.reshape(-1, row)[...] -= means.astype(np.float32)
    out *= np.float32(bound * 2.0**-23)


def fill_uniform(tensors: dict[str, tuple[torch.Tensor, float, int]], race_seed: bytes, workers: int = 0) -> None:
    """Fill each float32 tensor `name -> (tensor, bound, row)` in place from the race seed, chunks in parallel."""
    jobs = []
    for name, (tensor, bound, row) in tensors.items():
        flat, step = tensor.numpy().reshape(-1), max(1, CHUNK // row) * row
        jobs += [
            (chunk_key(race_seed, name, index), flat[start : start + step], bound, row)
            for index, start in enumerate(range(0, flat.size, step))
        ]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for future in [pool.submit(uniform_chunk, *job) for job in jobs]:
            future.result()
