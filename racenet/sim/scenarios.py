"""The named scenarios: one strategy each (or none, for `honest`) among honest machines, with their knobs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from racenet.sim.agents import AgentSpec, Strategy
from racenet.sim.runner import Scenario, Traffic
from racenet.sim.world import Economy

TOTAL_WEIGHT = 1000
MACHINES = 5


@dataclass(frozen=True)
class Knobs:
    """What the scenarios vary (percentages of weight, requests, checks)."""

    share_percent: int = 20
    """The strategic machine's share of the Race weight."""
    cheat_percent: int = 20
    skip_percent: int = 100
    coalition_percent: int = 40
    """The colluding coalition's combined share (two machines, half each)."""
    sybil_keys: int = 4
    wash_per_block: int = 2
    traffic: Traffic = field(default_factory=Traffic)
    economy: Economy = field(default_factory=Economy)


def population(strategic: list[AgentSpec]) -> tuple[AgentSpec, ...]:
    """The strategic machines, then honest ones sharing the rest of the weight equally: `MACHINES` in all (with
    the default knobs every machine has the same weight, so every scenario has the same baseline)."""
    honest = MACHINES - len(strategic)
    rest = TOTAL_WEIGHT - sum(a.weight for a in strategic)
    return (*strategic, *(AgentSpec(f"honest{i}", rest // honest) for i in range(honest)))


def scenarios(knobs: Knobs = Knobs()) -> dict[str, Scenario]:
    """Every named scenario under `knobs`."""
    weight = TOTAL_WEIGHT * knobs.share_percent // 100
    member = TOTAL_WEIGHT * knobs.coalition_percent // 200
    traffic = knobs.traffic
    named = [
        Scenario("honest", "everyone honest (the control: no strategy, no difference)", population([]), traffic),
        Scenario(
            "cheat",
            f"one executor answers {knobs.cheat_percent}% of its requests with made-up answers",
            population([AgentSpec("cheater", weight, Strategy.CHEAT, cheat_percent=knobs.cheat_percent)]),
            traffic,
        ),
        Scenario(
            "cheat-unreported",
            "the same cheater, with no dummy tasks and no user reports: only spot checks catch it",
            population([AgentSpec("cheater", weight, Strategy.CHEAT, cheat_percent=knobs.cheat_percent)]),
            replace(traffic, dummy_percent=0, report_percent=0),
        ),
        Scenario(
            "lazy",
            f"one validator skips {knobs.skip_percent}% of the checks and votes it owes",
            population([AgentSpec("lazy", weight, Strategy.LAZY, skip_percent=knobs.skip_percent)]),
            traffic,
        ),
        Scenario(
            "collude",
            f"a coalition of two ({knobs.coalition_percent}% of the weight) cheats {knobs.cheat_percent}% of the "
            "time, passes its members' answers and votes them valid",
            population(
                [
                    AgentSpec(f"colluder{i}", member, Strategy.COLLUDE, cheat_percent=knobs.cheat_percent)
                    for i in range(2)
                ]
            ),
            traffic,
        ),
        Scenario(
            "sybil",
            f"one machine splits its weight over {knobs.sybil_keys} keys that pass each other's answers unchecked",
            population([AgentSpec("sybil", weight, Strategy.SYBIL, keys=knobs.sybil_keys)]),
            traffic,
        ),
        Scenario(
            "wash",
            f"one provider pays for {knobs.wash_per_block} requests a block from its own developer key",
            population([AgentSpec("washer", weight, Strategy.WASH, wash_per_block=knobs.wash_per_block)]),
            traffic,
        ),
    ]
    return {s.name: replace(s, economy=knobs.economy) for s in named}
