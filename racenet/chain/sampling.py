"""Deterministic draws anyone can recompute from chain data: one hash rule for every draw the chain makes.

`draw` turns (seed, domain, counter) into an integer below a bound with SHA-256 (bias below 2**-200
for any bound under 2**56); `weighted_draw` picks distinct accounts by weight without replacement.
The domain names what is drawn (`b"validators" + participant`, `b"route" + request id + attempt`,
`b"challenge" + participant`), so no two draws share their numbers. Until the random beacon exists the
seeds come from past app hashes (see the race module).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

DRAW_DOMAIN = b"racenet/draw/v1\x00"


def draw(seed: bytes, domain: bytes, counter: int, bound: int) -> int:
    """The `counter`-th pseudo-random integer in [0, bound) of (seed, domain)."""
    message = DRAW_DOMAIN + len(seed).to_bytes(1, "big") + seed + domain + counter.to_bytes(8, "big")
    return int.from_bytes(hashlib.sha256(message).digest(), "big") % bound


def weighted_draw(
    seed: bytes, domain: bytes, weights: Sequence[tuple[bytes, int]], k: int, exclude: Collection[bytes] = ()
) -> list[bytes]:
    """Up to k distinct accounts, each drawn with probability proportional to its weight among those left.

    Accounts with no weight and those in `exclude` are never drawn; the pool is ordered by address, so the
    order weights are given in does not matter.
    """
    pool = sorted((a, int(w)) for a, w in weights if w > 0 and a not in exclude)
    chosen: list[bytes] = []
    counter = 0
    while pool and len(chosen) < k:
        r = draw(seed, domain, counter, sum(w for _, w in pool))
        for i, (address, weight) in enumerate(pool):
            if r < weight:
                chosen.append(address)
                del pool[i]
                break
            r -= weight
        counter += 1
    return chosen
