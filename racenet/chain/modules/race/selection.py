"""Deterministic choices anyone can recompute from chain data: challenged leaves and assigned validators.

Both draw from a seed that the chain fixed after the participant committed (Fiat-Shamir), so no
participant picks its own sample and no validator picks whom it checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from racenet.chain.sampling import draw, weighted_draw


def challenge_indices(challenge_seed: bytes, participant: bytes, count: int, sample_size: int) -> list[int]:
    """The leaves a participant must open: `sample_size` distinct indices (all if fewer)."""
    if count <= sample_size:
        return list(range(count))
    chosen: list[int] = []
    counter = 0
    while len(chosen) < sample_size:
        index = draw(challenge_seed, b"challenge" + participant, counter, count)
        if index not in chosen:
            chosen.append(index)
        counter += 1
    return chosen


def expected_openings(indices: list[int], count: int) -> list[int]:
    """The leaf indices a reveal must contain, in order: each challenged leaf, then its successor."""
    out: list[int] = []
    for i in indices:
        out.append(i)
        if i + 1 < count:
            out.append(i + 1)
    return out


def assign_validators(weights: Sequence[tuple[bytes, int]], seed: bytes, participant: bytes, k: int) -> list[bytes]:
    """Up to k validators for a participant, drawn by weight without replacement, never itself."""
    return weighted_draw(seed, b"validators" + participant, weights, k, exclude=(participant,))
