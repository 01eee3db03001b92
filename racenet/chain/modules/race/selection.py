"""Deterministic choices anyone can recompute from chain data: challenged leaves and committees.

Both draw from a seed that the chain fixed after the participant committed (Fiat-Shamir), so no
participant picks its own sample and no validator picks whom it checks.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence

from racenet.chain.sampling import draw, weighted_draw

REJECTION_LIMIT = 64


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


class WeightedPool:
    """Weight holders prepared once per cycle, so each committee draw costs O(k log n), not O(n).

    A draw picks by weight from the whole pool and redraws on an excluded or already chosen account,
    which gives each pick the same odds as drawing from the accounts left; after `REJECTION_LIMIT`
    redraws per pick (a pool dominated by excluded weight) it finishes with the exact O(n) draw.
    """

    def __init__(self, weights: Sequence[tuple[bytes, int]]) -> None:
        self.weights = sorted((a, int(w)) for a, w in weights if w > 0)
        self.cumulative: list[int] = []
        total = 0
        for _, w in self.weights:
            total += w
            self.cumulative.append(total)

    def draw(self, seed: bytes, domain: bytes, k: int, exclude: Collection[bytes]) -> list[bytes]:
        """Up to k distinct accounts outside `exclude`, by weight without replacement."""
        k = min(k, sum(1 for a, _ in self.weights if a not in exclude))
        if k <= 0:
            return []
        chosen: list[bytes] = []
        total = self.cumulative[-1]
        for counter in range(k * REJECTION_LIMIT):
            if len(chosen) == k:
                return chosen
            address = self.weights[bisect.bisect_right(self.cumulative, draw(seed, domain, counter, total))][0]
            if address not in chosen and address not in exclude:
                chosen.append(address)
        rest = weighted_draw(seed, domain + b"-exact", self.weights, k - len(chosen), exclude=(*exclude, *chosen))
        return chosen + rest


def assign_validators(pool: WeightedPool, seed: bytes, participant: bytes, k: int) -> list[bytes]:
    """Up to k validators for a participant (its committee), drawn by weight without replacement, never itself."""
    return pool.draw(seed, b"validators" + participant, k, exclude=(participant,))
