"""The executor rule: a weighted draw anyone can recompute from chain data.

Candidates are the Race nodes that serve the model, weighted by their voting weight; the draw
hashes the cycle's race seed, the request id and the attempt number, so neither the developer,
the transfer agent nor the executor chooses who runs a request.
"""

from __future__ import annotations

import hashlib


def choose_executor(
    seed: bytes, request_id: bytes, attempt: int, candidates: list[tuple[bytes, int]], tried: tuple[bytes, ...] = ()
) -> bytes | None:
    """The executor for (request, attempt): weighted by voting weight, skipping earlier executors."""
    pool = sorted((a, w) for a, w in candidates if w > 0 and a not in tried)
    total = sum(w for _, w in pool)
    if total == 0:
        return None
    digest = hashlib.sha256(b"racenet/route" + seed + request_id + attempt.to_bytes(4, "big")).digest()
    r = int.from_bytes(digest, "big") % total
    for address, weight in pool:
        if r < weight:
            return address
        r -= weight
    raise AssertionError("unreachable: r < total")
