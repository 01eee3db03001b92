"""Majority verification (whitepaper §6): when a claim's checks settle it, and who was on the losing side.

A claim's committee settles it when every vote cast agrees and the voters hold more than half of the
committee's weight. Any disagreement, or too little of the committee voting, escalates the claim to every
weight holder, and then a verdict stands only when more than half of all weight agrees on it, the
participant's own weight counting for its claim (it cannot vote, and an honest majority that includes it
must still be able to accept). A coalition below half the weight, its own claimants included, can therefore
delay a verdict by one window but never decide one against the honest majority, and a claim nobody checked
is never granted weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Ballot:
    """One vote on a claim: the voter, its weight this cycle and the verdict the chain drew from its counts."""

    voter: bytes
    weight: int
    accept: bool


def committee_verdict(ballots: Sequence[Ballot], committee_weight: int) -> bool | None:
    """The committee's verdict, or None when it does not settle the claim (disagreement or too few voters)."""
    verdicts = {b.accept for b in ballots}
    if len(verdicts) == 1 and 2 * sum(b.weight for b in ballots) > committee_weight:
        return verdicts.pop()
    return None


def majority_verdict(ballots: Sequence[Ballot], claimant_weight: int, total_weight: int) -> bool | None:
    """An escalated claim's verdict: the side holding more than half of `total_weight`, the claimant's own
    weight on the accepting side, or None."""
    accepted = claimant_weight + sum(b.weight for b in ballots if b.accept)
    if 2 * accepted > total_weight:
        return True
    if 2 * sum(b.weight for b in ballots if not b.accept) > total_weight:
        return False
    return None


def losing_voters(ballots: Sequence[Ballot], verdict: bool) -> list[bytes]:
    """The voters whose verdict differs from the decided one."""
    return [b.voter for b in ballots if b.accept != verdict]
