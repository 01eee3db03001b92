"""Key generation rules as pure functions: who holds which shares, which dealings are well formed, the group key.

Shares follow weight: only the `max_participants` heaviest nodes hold shares (the paper's "group of
participants with the highest accumulated voting weights"), `shares` indices split among them in proportion
to weight by largest remainders. The threshold is then the fewest shares that only a set holding more than
half of the total weight W of every node (holders or not) can reach (`safe_threshold`): no coalition with at
most W/2 can sign, whatever the rounding, while any honest set of holders reaching it can. When no set of
holders can be above W/2 (weight spread over more nodes than the group), there is no safe group: the
epoch's key generation is skipped and the previous group keeps signing.
"""

from __future__ import annotations

from collections.abc import Sequence

from racenet.chain.modules.beacon.types import Dealing, Epoch, Group, Holder, Params
from racenet.crypto.threshold import G1_BYTES, SCALAR_BYTES, InvalidPoint, g1, g2, sum_points


def allocate(epoch: int, params: Params, weights: Sequence[tuple[bytes, int]], keys: dict[bytes, bytes]) -> Epoch:
    """The holders of an epoch, their share counts and its threshold (0 if no safe threshold exists)."""
    total = sum(w for _, w in weights)
    ranked = sorted(((w, a) for a, w in weights if w > 0 and a in keys), key=lambda x: (-x[0], x[1]))
    chosen = sorted(ranked[: params.max_participants], key=lambda x: x[1])
    counts = share_counts([w for w, _ in chosen], params.shares)
    holders: list[Holder] = []
    first = 1
    for (_, address), count in zip(chosen, counts, strict=True):
        if count:
            holders.append(Holder(address, keys[address], first, count))
            first += count
    weight_of = dict((a, w) for w, a in chosen)
    threshold = safe_threshold([(weight_of[h.address], h.count) for h in holders], total)
    return Epoch(epoch, threshold, tuple(holders))


def share_counts(weights: Sequence[int], shares: int) -> list[int]:
    """`shares` split in proportion to `weights` by largest remainders (ties to the earlier entry)."""
    total = sum(weights)
    if not total:
        return [0] * len(weights)
    counts = [w * shares // total for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(weights[i] * shares % total), i))
    for i in by_remainder[: shares - sum(counts)]:
        counts[i] += 1
    return counts


def safe_threshold(holders: Sequence[tuple[int, int]], total_weight: int) -> int:
    """The fewest shares that every set of (weight, shares) holders reaching them holds more than half of
    `total_weight` with; 0 if even all holders together do not.

    lightest[c] is the least weight of a set of holders with at least c shares (a knapsack over share counts,
    in integers): the threshold is the smallest c with 2 · lightest[c] > total_weight.
    """
    shares = sum(count for _, count in holders)
    unreachable = total_weight + 1
    lightest = [0] + [unreachable] * shares
    for weight, count in holders:
        for c in range(shares, 0, -1):
            lightest[c] = min(lightest[c], lightest[max(0, c - count)] + weight)
    return next((c for c in range(1, shares + 1) if 2 * lightest[c] > total_weight), 0)


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
