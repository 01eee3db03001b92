"""Replayable sampling: the token an executor must pick is a function of the model's logits and a public seed.

Each generated position draws one uniform number `u` from the request's sampling seed (SHA-256, so every machine
gets the same `u`); the token is the one whose interval of the cumulative distribution contains `u`. The
distribution is softmax(logits / temperature) restricted to the top-p nucleus, and the cumulative sum runs in
token-id order, not in order of probability: a small numeric difference between two machines (fp32 vs bf16,
other thread counts) then moves each interval's edges by at most the total variation between their distributions,
instead of reshuffling the intervals whenever two probabilities swap places. A validator recomputes the intervals
with its own forward pass and accepts a token whose interval holds `u` up to a calibrated slack
(`racenet.verify.check`). Temperature 0 is greedy: the highest logit, ties to the lowest id.

The executor derives the seed from the request id and the developer's own `seed` (`request_sampling_seed`), so it
cannot choose the randomness it samples with, and a developer who sends the same body twice gets the same answer.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import torch

UNIFORM_DOMAIN = b"racenet/sample/uniform/v1\x00"
SEED_DOMAIN = b"racenet/sample/seed/v1\x00"
UNIFORM_BITS = 53
SEED_MASK = (1 << 64) - 1
NUCLEUS_SEARCH = 1024


def request_sampling_seed(request_id: bytes, user_seed: int | None) -> int:
    """The 64-bit sampling seed of a routed request: hash of its id and the developer's seed (if any)."""
    user = b"" if user_seed is None else (user_seed & SEED_MASK).to_bytes(8, "big")
    digest = hashlib.sha256(SEED_DOMAIN + request_id + user).digest()
    return int.from_bytes(digest[:8], "big")


def fresh_seed() -> int:
    """A random seed for a request that names none and is not routed through the chain."""
    return secrets.randbits(64)


def uniform(seed: int, position: int) -> float:
    """The uniform number in [0, 1) that picks the token at `position` (0 = first completion token)."""
    digest = hashlib.sha256(UNIFORM_DOMAIN + (seed & SEED_MASK).to_bytes(8, "big") + position.to_bytes(8, "big"))
    return (int.from_bytes(digest.digest()[:8], "big") >> (64 - UNIFORM_BITS)) / (1 << UNIFORM_BITS)


def nucleus_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """softmax(logits / temperature) in float64 over the last dimension, every token outside the top-p nucleus set to
    0 (not renormalized). Rows of a 2-D input are positions, each cut on its own.

    The nucleus is every token at least as likely as the one whose mass, added in order of probability, reaches
    `top_p`: defined by a probability threshold, so ties are in or out together on every machine. The threshold is
    searched among the `NUCLEUS_SEARCH` likeliest tokens (a full sort only for a row whose nucleus is wider).
    """
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    rows = probs.reshape(-1, probs.shape[-1])
    thresholds = torch.empty(rows.shape[0], 1, dtype=rows.dtype)
    likeliest = torch.topk(rows, min(NUCLEUS_SEARCH, rows.shape[-1]), dim=-1).values
    wide = likeliest.sum(dim=-1) < top_p
    thresholds[~wide] = _threshold(likeliest[~wide], top_p)
    if bool(wide.any()):
        thresholds[wide] = _threshold(torch.sort(rows[wide], dim=-1, descending=True).values, top_p)
    return (rows * (rows >= thresholds)).reshape(probs.shape)


def _threshold(descending: torch.Tensor, top_p: float) -> torch.Tensor:
    """Per row of probabilities sorted in descending order: the smallest one inside the nucleus."""
    inside = (torch.cumsum(descending, dim=-1) - descending < top_p).sum(dim=-1, keepdim=True)
    return descending.gather(-1, inside - 1)


@dataclass(frozen=True)
class Interval:
    """The part of [0, total) whose draws pick one token, and the nucleus mass `total` the draw is scaled to."""

    low: float
    high: float
    total: float


def token_interval(probs: torch.Tensor, token: int) -> Interval:
    """Where in the id-ordered cumulative distribution `token` sits."""
    cumulative = torch.cumsum(probs, dim=-1)
    high = float(cumulative[token])
    return Interval(high - float(probs[token]), high, float(cumulative[-1]))


def pick(logits: torch.Tensor, temperature: float, top_p: float, u: float) -> int:
    """The token a seeded executor emits: greedy at temperature 0, else the nucleus token whose interval holds u."""
    if temperature == 0.0:
        return int(torch.argmax(logits))
    probs = nucleus_probs(logits, temperature, top_p)
    cumulative = torch.cumsum(probs, dim=-1)
    target = torch.tensor([u * float(cumulative[-1])], dtype=cumulative.dtype)
    index = int(torch.searchsorted(cumulative, target, right=True))
    index = min(index, probs.numel() - 1)
    while float(probs[index]) == 0.0 and index > 0:  # a draw at the very top lands past the last nucleus token
        index -= 1
    return index
