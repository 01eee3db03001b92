"""Seeds, inputs, permutations, target vector and distance of the Race (whitepaper Appendix A).

    node seed    = BLAKE2b-256(public key), personalisation "racenet-node"
    input seed   = BLAKE2b-256(race seed || node seed || nonce as u64 little-endian), personalisation "racenet-input"
    tokens       = SHAKE-256("tokens" || input seed) read as seq_len u32 little-endian words, each mod vocab_size
    permutation  = stable argsort of SHAKE-256("permutation" || input seed) read as d_model u32 little-endian keys
    target       = the weights' generator (`racenet.pow.rng`) under the name "target", scaled to unit length
    distance     = || permutation applied to (output / ||output||) - target ||        (Euclidean, float64)
    appropriate  = distance < threshold

The input and the permutation are hashes of the input seed, not draws from the weights' generator, so
they cost a few microseconds per nonce on any machine. Both the output and the target lie on the unit sphere:
the final LayerNorm already fixes the output's norm to about sqrt(d_model), and dividing it out makes the
distance a function of direction only, so the threshold does not depend on the model's scale or dtype.
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
    """The nonces of one node and what the forward pass needs for them: tokens (B, T) and permutations (B, d)."""

    nonces: list[int]
    tokens: torch.Tensor
    permutations: torch.Tensor


def prepare(race_seed: bytes, node: bytes, nonces: Sequence[int], preset: Preset) -> NonceBatch:
    """Tokens and permutations for `nonces` of node seed `node` (CPU hashing; overlaps the forward pass)."""
    seeds = [input_seed(race_seed, node, n) for n in nonces]
    tokens = torch.tensor([input_tokens(s, preset) for s in seeds], dtype=torch.int64)
    keys = np.stack([permutation_keys(s, preset) for s in seeds]) if seeds else np.empty((0, preset.d_model))
    permutations = torch.from_numpy(np.argsort(keys, axis=1, kind="stable"))
    return NonceBatch(list(nonces), tokens.view(-1, preset.seq_len), permutations)


def target_vector(race_seed: bytes, preset: Preset) -> torch.Tensor:
    """The race's target on the unit sphere (float64), normalised with an exact sum so it is the same everywhere."""
    raw = torch.empty(preset.d_model)
    fill_uniform({"target": (raw, 1.0, 1)}, race_seed, workers=1)
    values = raw.double()
    norm = math.sqrt(math.fsum(v * v for v in values.tolist()))
    return values / norm


def distances(outputs: torch.Tensor, permutations: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each permuted, unit-length output vector to the target (float64, shape (B,))."""
    unit = outputs.double()
    unit = unit / unit.norm(dim=1, keepdim=True)
    permuted = torch.gather(unit, 1, permutations)
    result: torch.Tensor = torch.linalg.vector_norm(permuted - target, dim=1)
    return result


def is_appropriate(distance: float, threshold: float) -> bool:
    """Whether a distance makes its output an appropriate vector (strictly closer than the threshold)."""
    return distance < threshold
