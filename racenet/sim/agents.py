"""Agents: what each strategy does off chain (answer, check, vote, report) and the real messages it sends.

The float work (running the model, the logprob checks) is off chain, so an agent simply knows whether an answer
it served is right, and a checker that runs a check learns exactly that. Costs are off chain too: serving or
checking a request costs the agent `Economy.work_cost_percent` of the request's price; a made-up answer or a
check that is not run costs nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from racenet.crypto.keys import PrivateKey


class Strategy(StrEnum):
    """How an agent (one machine) plays."""

    HONEST = "honest"
    CHEAT = "cheat"
    """Answers `cheat_percent` of the requests it serves with a made-up answer (saves the serving cost)."""
    LAZY = "lazy"
    """Skips `skip_percent` of the checks and re-verification votes it owes (saves the checking cost)."""
    COLLUDE = "collude"
    """A coalition member: cheats like CHEAT, passes members' tasks unchecked and votes them valid."""
    SYBIL = "sybil"
    """Splits its weight over `keys` keys; passes its own keys' tasks unchecked and votes them valid."""
    WASH = "wash"
    """Pays for `wash_per_block` requests per block from its own developer key, to farm the subsidy."""


@dataclass(frozen=True)
class AgentSpec:
    """One machine: its Race weight, how it plays, and the strategy's knobs (percentages)."""

    name: str
    weight: int
    strategy: Strategy = Strategy.HONEST
    keys: int = 1
    cheat_percent: int = 0
    skip_percent: int = 0
    wash_per_block: int = 0


@dataclass
class Agent:
    """A machine's keys, its off-chain costs so far and its strategy's decisions."""

    spec: AgentSpec
    keys: list[PrivateKey]
    developer: PrivateKey | None
    rng: random.Random
    costs: int = 0
    coalition: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return self.spec.name

    def addresses(self) -> list[bytes]:
        """Every address whose balance is this agent's (its node keys and its developer key)."""
        keys = [*self.keys, *([self.developer] if self.developer else [])]
        return [k.public_key.address for k in keys]

    def answers_right(self, work_cost: int) -> bool:
        """Serve a request: a right answer (paying for the work) or, for a cheater, sometimes a made-up one."""
        cheat = self.spec.strategy in (Strategy.CHEAT, Strategy.COLLUDE)
        if cheat and self.rng.randrange(100) < self.spec.cheat_percent:
            return False
        self.costs += work_cost
        return True

    def covers(self, executor: str) -> bool:
        """Whether this agent passes and upholds the executor's answers without checking them."""
        if self.spec.strategy == Strategy.SYBIL:
            return executor == self.name
        return self.spec.strategy == Strategy.COLLUDE and executor in self.coalition

    def judge(self, executor: str, right: bool, work_cost: int) -> bool | None:
        """An owed check or vote on `executor`'s answer: the verdict it reports (True: valid), or None if it
        skips it. An honest judge runs the check (paying for it) and reports what it found."""
        if self.covers(executor):
            return True
        if self.spec.strategy == Strategy.LAZY and self.rng.randrange(100) < self.spec.skip_percent:
            return None
        self.costs += work_cost
        return right
