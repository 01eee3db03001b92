"""Deterministic choices anyone can recompute from chain data: challenged leaves and assigned validators.

Both hash a seed that the chain fixed after the participant committed (Fiat-Shamir), so no
participant picks its own sample and no validator picks whom it checks.
"""

from __future__ import annotations

import hashlib


def _draw(seed: bytes, participant: bytes, j: int, bound: int) -> int:
    """The j-th pseudo-random integer in [0, bound) for a participant (bias < 2**-32 for bound < 2**32)."""
    digest = hashlib.sha256(seed + participant + j.to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:12], "big") % bound


def challenge_indices(challenge_seed: bytes, participant: bytes, count: int, sample_size: int) -> list[int]:
    """The leaves a participant must open: `sample_size` distinct indices (all if fewer)."""
    if count <= sample_size:
        return list(range(count))
    chosen: list[int] = []
    j = 0
    while len(chosen) < sample_size:
        index = _draw(challenge_seed, participant, j, count)
        if index not in chosen:
            chosen.append(index)
        j += 1
    return chosen


def expected_openings(indices: list[int], count: int) -> list[int]:
    """The leaf indices a reveal must contain, in order: each challenged leaf, then its successor."""
    out: list[int] = []
    for i in indices:
        out.append(i)
        if i + 1 < count:
            out.append(i + 1)
    return out


def assign_validators(weights: list[tuple[bytes, int]], seed: bytes, participant: bytes, k: int) -> list[bytes]:
    """Up to k validators for a participant, drawn by weight without replacement, never itself."""
    candidates = [(a, w) for a, w in weights if a != participant and w > 0]
    chosen: list[bytes] = []
    j = 0
    while candidates and len(chosen) < k:
        r = _draw(seed, b"validators" + participant, j, sum(w for _, w in candidates))
        for i, (address, weight) in enumerate(candidates):
            if r < weight:
                chosen.append(address)
                del candidates[i]
                break
            r -= weight
        j += 1
    return chosen
