"""The executor rule: a weighted draw anyone can recompute from chain data.

Candidates are the Race nodes that serve the model, weighted by their voting weight; the draw
hashes the cycle's race seed, the request id and the attempt number, so neither the developer,
the transfer agent nor the executor chooses who runs a request.
"""

from __future__ import annotations

from collections.abc import Sequence

from racenet.chain.sampling import weighted_draw


def choose_executor(
    seed: bytes, request_id: bytes, attempt: int, candidates: Sequence[tuple[bytes, int]], tried: tuple[bytes, ...] = ()
) -> bytes | None:
    """The executor for (request, attempt): weighted by voting weight, skipping earlier executors."""
    domain = b"route" + request_id + attempt.to_bytes(4, "big")
    chosen = weighted_draw(seed, domain, candidates, 1, exclude=tried)
    return chosen[0] if chosen else None
