"""Key generation rules as pure functions: who holds which shares, which dealings are well formed, the group key.

Shares follow weight: holder i gets floor(w_i · shares / W) indices, W being the total weight of every
node (not only the holders), so the shares of any coalition below W/2 sum to less than shares/2 and
never reach the threshold `shares // 2 + 1`. Only the `max_participants` heaviest nodes hold shares
(the paper's "group of participants with the highest accumulated voting weights").
"""

from __future__ import annotations

from collections.abc import Sequence

from racenet.chain.modules.beacon.types import Dealing, Epoch, Group, Holder, Params
from racenet.crypto.threshold import G1_BYTES, SCALAR_BYTES, InvalidPoint, g1, g2, sum_points


def allocate(epoch: int, params: Params, weights: Sequence[tuple[bytes, int]], keys: dict[bytes, bytes]) -> Epoch:
    """The holders of an epoch: the heaviest nodes with a beacon key, shares in proportion to total weight."""
    total = sum(w for _, w in weights)
    ranked = sorted(((w, a) for a, w in weights if w > 0 and a in keys), key=lambda x: (-x[0], x[1]))
    chosen = sorted(ranked[: params.max_participants], key=lambda x: x[1])
    holders: list[Holder] = []
    first = 1
    for weight, address in chosen:
        count = weight * params.shares // total if total else 0
        if count:
            holders.append(Holder(address, keys[address], first, count))
            first += count
    return Epoch(epoch, params.threshold, tuple(holders))


def share_count(epoch: Epoch) -> int:
    """How many share indices the holders have in all."""
    return sum(h.count for h in epoch.holders)


def dealing_fault(epoch: Epoch, dealing: Dealing) -> str:
    """Why a dealing is malformed ('' if it is well formed): wrong epoch or sizes, or bytes that are not points."""
    if dealing.epoch != epoch.epoch:
        return f"dealing for epoch {dealing.epoch}, not {epoch.epoch}"
    if len(dealing.commitments) != epoch.threshold:
        return f"{len(dealing.commitments)} commitments, the threshold is {epoch.threshold}"
    if len(dealing.shares) != share_count(epoch) or any(len(s) != SCALAR_BYTES for s in dealing.shares):
        return f"a dealing carries {share_count(epoch)} encrypted shares of 32 bytes"
    if len(dealing.ephemeral) != G1_BYTES:
        return "the ephemeral key is not 48 bytes"
    try:
        g1(dealing.ephemeral)
        for c in dealing.commitments:
            g2(c)
    except InvalidPoint as e:
        return str(e)
    return ""


def group_key(epoch: Epoch, dealings: Sequence[tuple[bytes, Dealing]], active_from: int) -> Group:
    """The group of the qualified dealers: their commitments summed coefficient by coefficient."""
    points = [[g2(c) for c in d.commitments] for _, d in dealings]
    summed = tuple(bytes(sum_points([p[k] for p in points]).to_compressed_bytes()) for k in range(epoch.threshold))
    return Group(
        epoch=epoch.epoch,
        threshold=epoch.threshold,
        holders=epoch.holders,
        dealers=tuple(a for a, _ in dealings),
        commitments=summed,
        active_from=active_from,
    )


def holder_of(epoch: Epoch | Group, address: bytes) -> Holder | None:
    """The holder record of an account (None if it holds no shares)."""
    return next((h for h in epoch.holders if h.address == address), None)
