"""The verifier: recompute a node's opened nonces in fp32; the chain turns the failures into a verdict."""

from __future__ import annotations

from collections.abc import Sequence

from racenet.pow.race import Race
from racenet.pow.vectors import NONCE_LIMIT, is_appropriate


def verify_nonces(race: Race, public_key: bytes, nonces: Sequence[int], batch_size: int = 256) -> list[bool]:
    """For each nonce, whether it gives an appropriate vector for this node in this race (computed in batches).

    A nonce outside the u64 range fails instead of raising, so one bad reveal cannot stop a validator.
    """
    in_range = [0 <= n < NONCE_LIMIT for n in nonces]
    valid = [n for n, ok in zip(nonces, in_range, strict=True) if ok]
    passed: list[bool] = []
    for start in range(0, len(valid), batch_size):
        distances = race.node_distances(public_key, valid[start : start + batch_size])
        passed += [is_appropriate(d, race.threshold) for d in distances.tolist()]
    results = iter(passed)
    return [ok and next(results) for ok in in_range]
