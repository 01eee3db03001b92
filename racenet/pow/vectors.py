"""Seeds, inputs, permutations, targets and distance of the Race (whitepaper Appendix A).

    node seed    = BLAKE2b-256(public key), personalisation "racenet-node"
    input seed   = BLAKE2b-256(race seed || node seed || nonce as u64 little-endian), personalisation "racenet-input"
    tokens       = SHAKE-256("tokens" || input seed) read as seq_len u32 little-endian words, each mod vocab_size
    permutation  = stable argsort of SHAKE-256("permutation" || input seed) read as d_model u32 little-endian keys
    mix          = the input seed's last 4 bytes as a u32, little-endian
    targets      = TARGETS rows of d_model from the weights' generator (`racenet.pow.rng`) under the name
                   "targets", each scaled to unit length
    output key   = the signs of the output's first `preset.key_bits` values, read in chunks of KEY_CHUNK bits
                   (bit i of a chunk is 1 iff its i-th value is > 0)
    target       = targets[h >> (32 - log2 TARGETS)], h = mix folded with each key chunk c in turn by
                   h = ((h XOR c) * KEY_MULTIPLIER) mod 2^32, then h = h XOR (h >> 15)
    distance     = || permutation applied to (output / ||output||) - target ||        (Euclidean, float64)
    appropriate  = distance < threshold

The input and the permutation are hashes of the input seed, not draws from the weights' generator, so
they cost a few microseconds per nonce on any machine. Both the output and the targets lie on the unit sphere:
the final LayerNorm already fixes the output's norm to about sqrt(d_model), and dividing it out makes the
distance a function of direction only, so the threshold does not depend on the model's scale or dtype.

Which target a nonce is measured against depends on its output (security review H4). With one target known
before the forward pass, a cheap predictor of the output (on `tiny`, a table of per-token mean outputs) ranked
nonces well enough to skip most forward passes. Now a predictor must get all `key_bits` signs right to know
the target; with any sign wrong the target is another random row and the prediction says nothing about the
distance. Given the output the target is still a uniformly random row, so the distance has the distribution it
had before and the thresholds keep their meaning (averaging over 1024 targets even removed most of the seed
dependence tiny had). What it costs honest miners: fp32 variants agree bitwise or within ~1e-5 and flip no
sign in the noise measurements (decision.py); a bf16 miner's output differs by ~1e-2 and flips a key sign for
17% (tiny, 64 bits), 17% (small, 32) and 26% (paper, 32) of nonces, which it misses, confirming its candidates
in fp32 as before. `bench/prescreen.py` measures the best predictors' gain; `key_bits` is set per preset where
that gain is at or below 1.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from racenet.pow.presets import Preset
from racenet.pow.rng import fill_uniform

NONCE_LIMIT = 1 << 64
TARGETS = 1024
TARGET_BITS = TARGETS.bit_length() - 1
KEY_CHUNK = 16
KEY_MULTIPLIER = 0x5BD1E995
WORD = 0xFFFFFFFF


def node_seed(public_key: bytes) -> bytes:
    """The node's 32-byte seed: binds every input it mines to its public key, so nonces can't be copied."""
    return hashlib.blake2b(public_key, digest_size=32, person=b"racenet-node").digest()


def input_seed(race_seed: bytes, node: bytes, nonce: int) -> bytes:
    """The 32-byte seed of one nonce's input and permutation (paper: combine_seeds)."""
    if not 0 <= nonce < NONCE_LIMIT:
        raise ValueError(f"a nonce is an unsigned 64-bit integer, got {nonce}")
    message = race_seed + node + nonce.to_bytes(8, "little")
    return hashlib.blake2b(message, digest_size=32, person=b"racenet-input").digest()


def input_tokens(seed: bytes, preset: Preset) -> list[int]:
    """The input sequence (seq_len token ids) of an input seed."""
    words = np.frombuffer(hashlib.shake_256(b"tokens" + seed).digest(4 * preset.seq_len), dtype="<u4")
    return [int(w) % preset.vocab_size for w in words]


def permutation_keys(seed: bytes, preset: Preset) -> np.ndarray:
    """d_model u32 sort keys whose stable argsort is the input seed's permutation."""
    return np.frombuffer(hashlib.shake_256(b"permutation" + seed).digest(4 * preset.d_model), dtype="<u4")


@dataclass(frozen=True)
class NonceBatch:
    """The nonces of one node and what the forward pass needs for them: tokens (B, T), permutations (B, d) and
    each nonce's mix (B,), which picks its target together with its output."""

    nonces: list[int]
    tokens: torch.Tensor
    permutations: torch.Tensor
    mix: torch.Tensor


def prepare(race_seed: bytes, node: bytes, nonces: Sequence[int], preset: Preset) -> NonceBatch:
    """Tokens, permutations and mixes for `nonces` of node seed `node` (CPU hashing; overlaps the forward pass)."""
    seeds = [input_seed(race_seed, node, n) for n in nonces]
    tokens = torch.tensor([input_tokens(s, preset) for s in seeds], dtype=torch.int64)
    keys = np.stack([permutation_keys(s, preset) for s in seeds]) if seeds else np.empty((0, preset.d_model))
    permutations = torch.from_numpy(np.argsort(keys, axis=1, kind="stable"))
    mix = torch.tensor([int.from_bytes(s[-4:], "little") for s in seeds], dtype=torch.int64)
    return NonceBatch(list(nonces), tokens.view(-1, preset.seq_len), permutations, mix)


def target_vectors(race_seed: bytes, preset: Preset) -> torch.Tensor:
    """The race's TARGETS targets on the unit sphere (float64, (TARGETS, d)), each normalised with an exact sum
    so they are the same everywhere."""
    raw = torch.empty(TARGETS, preset.d_model)
    fill_uniform({"targets": (raw, 1.0, 1)}, race_seed, workers=1)
    values = raw.double()
    norms = [math.sqrt(math.fsum(v * v for v in row)) for row in values.tolist()]
    return values / torch.tensor(norms, dtype=torch.float64).unsqueeze(1)


def output_keys(outputs: torch.Tensor, key_bits: int) -> torch.Tensor:
    """Each output's key: the signs of its first `key_bits` values, as (B, key_bits / KEY_CHUNK) chunks of bits."""
    bits = (outputs[:, :key_bits] > 0).to(torch.int64).view(len(outputs), -1, KEY_CHUNK)
    return bits @ torch.tensor([1 << i for i in range(KEY_CHUNK)], dtype=torch.int64)


def target_indices(keys: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """The target row of each (output key, mix), broadcasting `keys[..., chunk]` against `mix`: each chunk is
    folded into the mix by a bijection, so any change of the key lands on an unrelated row."""
    mixed = mix
    for chunk in keys.unbind(-1):
        mixed = (torch.bitwise_xor(mixed, chunk) * KEY_MULTIPLIER) & WORD
        mixed = torch.bitwise_xor(mixed, mixed >> 15)
    return mixed >> (32 - TARGET_BITS)


def distances(outputs: torch.Tensor, batch: NonceBatch, targets: torch.Tensor, key_bits: int) -> torch.Tensor:
    """Euclidean distance of each permuted, unit-length output vector to its target (float64, shape (B,))."""
    unit = outputs.double()
    unit = unit / unit.norm(dim=1, keepdim=True)
    permuted = torch.gather(unit, 1, batch.permutations)
    chosen = targets[target_indices(output_keys(outputs, key_bits), batch.mix)]
    result: torch.Tensor = torch.linalg.vector_norm(permuted - chosen, dim=1)
    return result


def is_appropriate(distance: float, threshold: float) -> bool:
    """Whether a distance makes its output an appropriate vector (strictly closer than the threshold)."""
    return distance < threshold
