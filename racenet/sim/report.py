"""The comparison as a table (rich, 80 columns), as JSON, and as PNG plots when matplotlib is installed."""

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
    """One line per strategic agent: its weight share, profit honest and strategic, the difference (95% CI)."""
    out = Table(title=title, width=80)
    out.add_column("scenario", no_wrap=True)
    out.add_column("share", justify="right")
    out.add_column("honest", justify="right")
    out.add_column("strategy", justify="right")
    out.add_column("Δ icon (95% CI)", justify="right", no_wrap=True)
    out.add_column("caught", justify="right")
    out.add_column("", no_wrap=True)
    for row in rows:
        name = row.scenario if row.agent in ("cheater", "lazy", "sybil", "washer") else f"{row.scenario}:{row.agent}"
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


def plot(rows: list[Row], directory: Path) -> Path:
    """A bar chart of each strategy's advantage over honest play with its 95% interval, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    labels = [f"{r.scenario}:{r.agent}" for r in rows]
    means = [r.advantage.mean for r in rows]
    errors = [0.0 if r.advantage.low is None else r.advantage.mean - r.advantage.low for r in rows]
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.barh(labels, means, xerr=errors, color=["tab:red" if m > 0 else "tab:green" for m in means])
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("profit minus honest profit (icon, 95% CI over seeds)")
    figure.tight_layout()
    path = directory / "advantage.png"
    figure.savefig(path)
    plt.close(figure)
    return path
