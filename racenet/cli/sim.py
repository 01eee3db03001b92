"""`racenet sim`: agent-based scenarios on the real chain modules, each strategy's profit against honest play."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress

from racenet.chain.modules.tokenomics import SUBSIDY_CAP, exact_cap
from racenet.cli.common import echo_json, fail, json_option
from racenet.sim.report import document, plot, plots_available, table
from racenet.sim.runner import Traffic
from racenet.sim.scenarios import Knobs, scenarios
from racenet.sim.stats import Baselines, Row, compare
from racenet.sim.world import Economy

PERCENT = click.IntRange(0, 100)


@click.command()
@json_option
@click.option("--scenario", "names", multiple=True, help="A named scenario (repeatable; default: all).")
@click.option(
    "--seeds",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Runs per scenario (and of its honest baseline).",
)
@click.option(
    "--cycles", type=click.IntRange(1, 100), default=3, show_default=True, help="Race cycles of traffic per run."
)
@click.option(
    "--share",
    type=click.IntRange(1, 95),
    default=20,
    show_default=True,
    help="The strategic machine's % of the Race weight.",
)
@click.option(
    "--cheat-rate", type=PERCENT, default=20, show_default=True, help="% of served requests a cheater makes up."
)
@click.option(
    "--skip-rate", type=PERCENT, default=100, show_default=True, help="% of owed checks a lazy validator skips."
)
@click.option(
    "--coalition",
    type=click.IntRange(2, 95),
    default=40,
    show_default=True,
    help="The colluding coalition's % of the weight.",
)
@click.option(
    "--sybil-keys",
    type=click.IntRange(1, 8),
    default=4,
    show_default=True,
    help="Keys the sybil splits its weight over.",
)
@click.option(
    "--wash-rate",
    type=click.IntRange(0, 20),
    default=2,
    show_default=True,
    help="Requests per block a wash trader pays for.",
)
@click.option("--requests", type=click.IntRange(0, 20), default=1, show_default=True, help="User requests per block.")
@click.option("--dummy", type=PERCENT, default=10, show_default=True, help="% of user traffic that is dummy tasks.")
@click.option("--reports", type=PERCENT, default=20, show_default=True, help="% chance a user reports a wrong answer.")
@click.option(
    "--work-cost",
    type=PERCENT,
    default=50,
    show_default=True,
    help="Serving or checking cost, % of the request's price.",
)
@click.option(
    "--subsidy-cap",
    type=click.IntRange(1, 9),
    default=SUBSIDY_CAP,
    show_default=True,
    help="tokenomics max_subsidy_per_fee (9: the paper's uncapped phases).",
)
@click.option("--plot", "plot_dir", type=click.Path(path_type=Path), help="Write PNG plots into this directory.")
def sim(
    as_json: bool,
    names: tuple[str, ...],
    seeds: int,
    cycles: int,
    share: int,
    cheat_rate: int,
    skip_rate: int,
    coalition: int,
    sybil_keys: int,
    wash_rate: int,
    requests: int,
    dummy: int,
    reports: int,
    work_cost: int,
    subsidy_cap: int,
    plot_dir: Path | None,
) -> None:
    """Run scenarios on an in-process chain and print each strategy's profit against the same machine playing
    honestly (icon, mean over seeds with a 95% interval). Scenarios: honest, cheat, cheat-unreported, lazy,
    collude, sybil, wash."""
    knobs = Knobs(
        share_percent=share,
        cheat_percent=cheat_rate,
        skip_percent=skip_rate,
        coalition_percent=coalition,
        sybil_keys=sybil_keys,
        wash_per_block=wash_rate,
        traffic=replace(Traffic(), requests_per_block=requests, dummy_percent=dummy, report_percent=reports),
        economy=replace(Economy(), work_cost_percent=work_cost, subsidy_cap=subsidy_cap),
    )
    known = scenarios(knobs)
    unknown = [n for n in names if n not in known]
    if unknown:
        fail(f"unknown scenario {', '.join(unknown)}: one of {', '.join(known)}")
    if not exact_cap(subsidy_cap):
        fail("--subsidy-cap is one of 1, 2, 3, 4, 6 and 9")
    if plot_dir is not None and not plots_available():
        fail("--plot needs matplotlib, which is not installed (pip install matplotlib)")
    if plot_dir is not None and plot_dir.exists() and not plot_dir.is_dir():
        fail(f"--plot {plot_dir} is a file, not a directory")
    console = Console(stderr=as_json, width=80)
    chosen = names or tuple(known)
    rows: list[Row] = []
    baselines: Baselines = {}
    with Progress(*Progress.get_default_columns(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("simulating", total=len(chosen) * seeds)
        for name in chosen:
            bar.update(task, description=name)
            rows += compare(known[name], list(range(1, seeds + 1)), cycles, baselines, lambda s, n: bar.advance(task))
    if as_json:
        echo_json(document(rows, {"seeds": seeds, "cycles": cycles, "knobs": asdict(knobs)}))
    else:
        console.print(table(rows, f"profit per run vs honest play ({seeds} seeds × {cycles} cycles)"))
    if plot_dir is not None:
        for path in plot(rows, plot_dir):
            console.print(f"plot: {path}")
