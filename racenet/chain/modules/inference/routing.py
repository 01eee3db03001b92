"""The executor rule: a weighted draw anyone can recompute from chain data.

Candidates are the Race nodes that serve the model, weighted by their voting weight; the draw
hashes the cycle's race seed, the request id and the attempt number, so neither the developer,
the transfer agent nor the executor chooses who runs a request; the transfer agent is never
drawn for its own requests. (The race seed is still grindable by proposers: the beacon issue.)
"""

from __future__ import annotations

from collections.abc import Sequence

from racenet.chain.sampling import weighted_draw


def choose_executor(
    seed: bytes, request_id: bytes, attempt: int, candidates: Sequence[tuple[bytes, int]], exclude: tuple[bytes, ...]
) -> bytes | None:
    """The executor for (request, attempt): weighted by voting weight, never one in `exclude` (the transfer
    agent, earlier executors)."""
    domain = b"route" + request_id + attempt.to_bytes(4, "big")
    chosen = weighted_draw(seed, domain, candidates, 1, exclude=exclude)
    return chosen[0] if chosen else None
