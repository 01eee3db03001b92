"""The explorer's plots as inline SVG (matplotlib's SVG output, text kept as text): weights over cycles,
issuance against the paper's curve, and a training job's loss curve."""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from racenet.chain.modules.tokenomics.schedule import (
    ICON,
    PAPER_CAP,
    PHASE_ISSUANCE,
    PHASES,
    subsidy_per_fee,
)

LOCK = threading.Lock()
"""matplotlib's global state (rcParams) is not thread-safe; pages render in a thread pool."""
Series = Sequence[tuple[float, float]]


def svg(figure: Figure) -> str:
    """A figure as an SVG element (no XML prologue), to inline in a page."""
    out = io.StringIO()
    with LOCK, matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "racenet"}):
        figure.savefig(out, format="svg", bbox_inches="tight")
    text = out.getvalue()
    return text[text.index("<svg") :]


def line_plot(title: str, xlabel: str, ylabel: str, series: Mapping[str, Series]) -> str:
    """Named (x, y) series over whole-number x (cycles, rounds) as one line plot."""
    figure = Figure(figsize=(7, 3.2))
    axes = figure.add_subplot()
    for name, points in series.items():
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize="small")
    return svg(figure)


def issuance_curve(cap: int) -> list[tuple[float, float]]:
    """(fees paid, core incentive minted), in icon, at each phase's end under a subsidy `cap` per fee."""
    fees, minted, points = 0.0, 0.0, [(0.0, 0.0)]
    for phase in range(1, PHASES + 1):
        rate = subsidy_per_fee(phase, cap)
        fees += PHASE_ISSUANCE * rate.denominator / rate.numerator / ICON
        minted += PHASE_ISSUANCE / ICON
        points.append((fees, minted))
    return points


def issuance_plot(cap: int, minted: int) -> str:
    """The core incentive minted against the fees paid: the paper's curve (9 per fee in phase 1), the chain's
    under its cap, and the amount minted so far."""
    figure = Figure(figsize=(7, 3.4))
    axes = figure.add_subplot()
    for name, curve in ((f"paper (≤ {PAPER_CAP} per fee)", PAPER_CAP), (f"this chain (≤ {cap} per fee)", cap)):
        points = issuance_curve(curve)[1:]
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
    axes.axhline(minted / ICON, color="crimson", linestyle="--", label=f"minted now: {minted / ICON:,.0f} icon")
    axes.set_xscale("log")
    axes.set_title("core incentive issued against fees paid (one point per phase)")
    axes.set_xlabel("fees paid (icon, log scale)")
    axes.set_ylabel("minted (icon)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return svg(figure)
