"""`racenet sim`: agent-based scenarios on the real chain modules, each strategy's profit against honest play."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import click
from rich.console import Console

from racenet.chain.modules.tokenomics import SUBSIDY_CAP, exact_cap
from racenet.cli.common import echo_json, fail, json_option
from racenet.sim.report import document, plot, plots_available, table
from racenet.sim.runner import Traffic
from racenet.sim.scenarios import Knobs, scenarios
from racenet.sim.stats import Baselines, Row, compare
from racenet.sim.world import Economy


@click.command()
@json_option
@click.option("--scenario", "names", multiple=True, help="A named scenario (repeatable; default: all).")
@click.option("--seeds", default=3, show_default=True, help="Runs per scenario (and of its honest baseline).")
@click.option("--cycles", default=3, show_default=True, help="Race cycles of traffic per run.")
@click.option("--share", default=20, show_default=True, help="The strategic machine's % of the Race weight.")
@click.option("--cheat-rate", default=20, show_default=True, help="% of served requests a cheater makes up.")
@click.option("--skip-rate", default=100, show_default=True, help="% of owed checks a lazy validator skips.")
@click.option("--coalition", default=40, show_default=True, help="The colluding coalition's % of the weight.")
@click.option("--sybil-keys", default=4, show_default=True, help="Keys the sybil splits its weight over.")
@click.option("--wash-rate", default=2, show_default=True, help="Requests per block a wash trader pays for.")
@click.option("--requests", default=1, show_default=True, help="User requests per block.")
@click.option("--dummy", default=10, show_default=True, help="% of user traffic that is dummy tasks.")
@click.option("--reports", default=20, show_default=True, help="% chance a user reports a wrong answer.")
@click.option("--work-cost", default=50, show_default=True, help="Serving or checking cost, % of the request's price.")
@click.option(
    "--subsidy-cap",
    type=click.IntRange(1, 9),
    default=SUBSIDY_CAP,
    show_default=True,
    help="tokenomics max_subsidy_per_fee (9: the paper's uncapped phases).",
)
@click.option("--plot", "plot_dir", type=click.Path(path_type=Path), help="Write PNG plots here (needs matplotlib).")
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
    if seeds < 1 or cycles < 1:
        fail("--seeds and --cycles are at least 1")
    if not exact_cap(subsidy_cap):
        fail("--subsidy-cap is one of 1, 2, 3, 4, 6 and 9")
    console = Console(stderr=as_json, width=80)
    rows: list[Row] = []
    baselines: Baselines = {}
    for name in names or tuple(known):
        scenario, seeds_run = known[name], list(range(1, seeds + 1))
        rows += compare(scenario, seeds_run, cycles, baselines, lambda s, n: console.log(f"{s}: seed {n}"))
    if as_json:
        echo_json(document(rows, {"seeds": seeds, "cycles": cycles, "knobs": asdict(knobs)}))
    else:
        console.print(table(rows, f"profit per run vs honest play ({seeds} seeds × {cycles} cycles)"))
    if plot_dir is not None:
        if plots_available():
            console.print(f"plot: {plot(rows, plot_dir)}")
        else:
            console.print("matplotlib is not installed: no plots")
