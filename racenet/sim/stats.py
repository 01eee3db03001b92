"""Paired comparison over seeds: each strategy's profit against the same machine playing honestly."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from racenet.sim.runner import Outcome, Scenario, run

T_95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
"""Two-sided 95% Student t quantiles for 1 to 10 degrees of freedom (beyond: 1.96 + 2.4/df)."""


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and its 95% confidence interval (None with a single seed)."""

    mean: float
    low: float | None
    high: float | None


def interval(values: list[float]) -> Interval:
    """The mean of `values` and its Student t 95% interval."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, None, None)
    df = len(values) - 1
    t = T_95[df - 1] if df <= len(T_95) else 1.96 + 2.4 / df
    half = t * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half)


@dataclass(frozen=True)
class Row:
    """A strategic agent's result in a scenario: profit honest and with its strategy, their difference."""

    scenario: str
    agent: str
    strategy: str
    share_percent: float
    honest: Interval
    strategic: Interval
    advantage: Interval
    wrong: int
    caught: int
    misjudged: int
    per_seed: tuple[tuple[float, float], ...]


Progress = Callable[[str, int], None]
"""Called with the scenario's name and the seed once a seed's runs are done."""


Baselines = dict[tuple[Scenario, int, int], dict[str, Outcome]]
"""All-honest runs by (baseline scenario, seed, cycles), shared by the scenarios whose machines are the same."""


def compare(
    scenario: Scenario, seeds: list[int], cycles: int, baselines: Baselines, progress: Progress | None = None
) -> list[Row]:
    """Run the scenario and its all-honest baseline on every seed; one row per strategic agent (for the control
    scenario, the first agent)."""
    focal = scenario.focal() or list(scenario.agents[:1])
    slots = {a.name: i for i, a in enumerate(scenario.agents)}
    total = sum(a.weight for a in scenario.agents)
    pairs: dict[str, list[tuple[Outcome, Outcome]]] = {a.name: [] for a in focal}
    baseline = scenario.baseline()
    for seed in seeds:
        if (baseline, seed, cycles) not in baselines:
            baselines[baseline, seed, cycles] = run(baseline, seed, cycles)
        honest = baselines[baseline, seed, cycles]
        control = {a.name: honest[f"machine{i}"] for i, a in enumerate(scenario.agents)}
        played = run(scenario, seed, cycles) if scenario.focal() else control  # the control is its baseline
        for a in focal:
            pairs[a.name].append((honest[f"machine{slots[a.name]}"], played[a.name]))
        if progress:
            progress(scenario.name, seed)
    rows = []
    for a in focal:
        found = pairs[a.name]
        rows.append(
            Row(
                scenario=scenario.name,
                agent=a.name,
                strategy=a.strategy.value,
                share_percent=100 * a.weight / total,
                honest=interval([h.profit for h, _ in found]),
                strategic=interval([s.profit for _, s in found]),
                advantage=interval([s.profit - h.profit for h, s in found]),
                wrong=sum(s.wrong for _, s in found),
                caught=sum(s.caught for _, s in found),
                misjudged=sum(s.misjudged for _, s in found),
                per_seed=tuple((h.profit, s.profit) for h, s in found),
            )
        )
    return rows
