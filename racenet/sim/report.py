"""The comparison as a table (rich, 80 columns), as JSON, and as PNG plots (matplotlib, when installed)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

from rich.table import Table

from racenet.sim.stats import Interval, Row


def spread(value: Interval) -> str:
    """`mean ± half-width` in icon (just the mean with a single seed)."""
    if value.low is None or value.high is None:
        return f"{value.mean:+.1f}"
    return f"{value.mean:+.1f} ± {(value.high - value.low) / 2:.1f}"


def verdict(row: Row) -> str:
    """Whether the strategy pays: below honest (its whole interval under 0), above, or not distinguishable."""
    if row.strategy == "honest":
        return "control"
    if row.advantage.high is not None and row.advantage.high < 0:
        return "loses"
    if row.advantage.low is not None and row.advantage.low > 0:
        return "PAYS"
    return "loses?" if row.advantage.mean < 0 else "pays?"


def table(rows: list[Row], title: str) -> Table:
    """One line per strategic agent (`scenario` or `scenario#n`): its weight share, profit honest and played, the
    difference with its 95% interval, its caught/wrong answers, and the verdict."""
    out = Table(title=title, width=80)
    out.add_column("scenario", no_wrap=True)
    out.add_column("share", justify="right")
    out.add_column("honest", justify="right")
    out.add_column("played", justify="right")
    out.add_column("Δ ± 95% CI", justify="right", no_wrap=True)
    out.add_column("caught", justify="right")
    out.add_column("verdict", no_wrap=True)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.scenario] = counts.get(row.scenario, 0) + 1
    seen: dict[str, int] = {}
    for row in rows:
        seen[row.scenario] = seen.get(row.scenario, 0) + 1
        name = row.scenario if counts[row.scenario] == 1 else f"{row.scenario}#{seen[row.scenario]}"
        out.add_row(
            name,
            f"{row.share_percent:.0f}%",
            f"{row.honest.mean:.1f}",
            f"{row.strategic.mean:.1f}",
            spread(row.advantage),
            f"{row.caught}/{row.wrong}",
            verdict(row),
        )
    return out


def document(rows: list[Row], settings: dict[str, Any]) -> dict[str, Any]:
    """The JSON form: the settings of the run and every row (profits in icon)."""
    return {"settings": settings, "results": [dataclasses.asdict(r) | {"verdict": verdict(r)} for r in rows]}


def plots_available() -> bool:
    """Whether matplotlib is installed (plots are skipped without it)."""
    return importlib.util.find_spec("matplotlib") is not None


def errors(values: list[Interval]) -> list[float]:
    """The half-widths of 95% intervals (0 with a single seed), for error bars."""
    return [0.0 if v.low is None else v.mean - v.low for v in values]


def plot(rows: list[Row], directory: Path) -> list[Path]:
    """Two PNG charts: each strategy's advantage over honest play, and its profit beside the same machine's
    honest profit (means over seeds with 95% intervals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    labels = [f"{r.scenario}:{r.agent}" for r in rows]
    height = 1.2 + 0.45 * len(rows)
    figure, axes = plt.subplots(figsize=(8, height))
    means = [r.advantage.mean for r in rows]
    colors = ["tab:red" if verdict(r) in ("PAYS", "pays?") else "tab:green" for r in rows]
    axes.barh(labels, means, xerr=errors([r.advantage for r in rows]), color=colors, capsize=3)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.invert_yaxis()
    axes.set_xlabel("profit minus honest profit per run (icon, 95% CI over seeds)")
    figure.tight_layout()
    advantage = directory / "advantage.png"
    figure.savefig(advantage)
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(8, height))
    ys = list(range(len(rows)))
    honest, played = [r.honest for r in rows], [r.strategic for r in rows]
    axes.barh([y - 0.2 for y in ys], [v.mean for v in honest], 0.4, xerr=errors(honest), label="honest", capsize=3)
    axes.barh([y + 0.2 for y in ys], [v.mean for v in played], 0.4, xerr=errors(played), label="played", capsize=3)
    axes.set_yticks(ys, labels)
    axes.invert_yaxis()
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("profit per run (icon, 95% CI over seeds)")
    axes.legend()
    figure.tight_layout()
    profit = directory / "profit.png"
    figure.savefig(profit)
    plt.close(figure)
    return [advantage, profit]
