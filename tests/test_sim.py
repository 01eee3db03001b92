"""`racenet sim` (racenet/sim/): strategies played on the real chain modules, each against the same machine playing
honestly on the same seed. Under the default parameters every cheating strategy earns less than honest play, and
wash trading pays under the paper's uncapped subsidy (the defence the default cap is: docs/economics.md).

Kept small (one seed, one Race cycle of traffic, five machines); `racenet sim --seeds N --cycles M` runs more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from racenet.chain.modules.tokenomics import PAPER_CAP
from racenet.cli.main import cli
from racenet.sim.report import table
from racenet.sim.scenarios import Knobs, scenarios
from racenet.sim.stats import Baselines, Row, compare
from racenet.sim.world import BALANCE, Economy, Node, genesis, sim_key

CHEATING = ("cheat", "cheat-unreported", "lazy", "collude", "sybil", "wash")
KNOBS = Knobs(cheat_percent=50)
"""The default knobs, but cheaters cheat on half their answers so that one short cycle surely holds a cheat."""


@pytest.fixture(scope="module")
def rows() -> dict[str, Row]:
    named = scenarios(KNOBS)
    baselines: Baselines = {}
    found = {}
    for name in CHEATING:
        for row in compare(named[name], [1], 1, baselines):
            found[f"{name}:{row.agent}"] = row
    assert len(baselines) == 2  # the same machines: one all-honest run per traffic (cheat-unreported's differs)
    return found


def test_every_cheating_strategy_earns_less_than_honest_play(rows: dict[str, Row]) -> None:
    assert {key.split(":")[0] for key in rows} == set(CHEATING)
    for key, row in rows.items():
        assert row.strategic.mean < row.honest.mean, f"{key} earns {row.advantage.mean:+.2f} icon over honest play"


def test_cheats_are_made_and_caught_and_the_table_fits_80_columns(rows: dict[str, Row]) -> None:
    cheater = rows["cheat:cheater"]
    assert cheater.wrong > 0 and cheater.caught > 0
    console = Console(width=80, record=True)
    console.print(table(list(rows.values()), "test"))
    assert max(len(line) for line in console.export_text().splitlines()) <= 80


def test_wash_trading_pays_under_the_papers_uncapped_subsidy() -> None:
    """The defence: the same wash trader as above (20% of the weight) profits when a fee mints 9x its amount."""
    wash = scenarios(Knobs(economy=Economy(subsidy_cap=PAPER_CAP)))["wash"]
    [row] = compare(wash, [1], 1, {})
    assert row.strategic.mean > row.honest.mean + 1


def test_the_command_prints_json_and_plots_and_the_control_equals_its_baseline(tmp_path: Path) -> None:
    arguments = ["sim", "--json", "--scenario", "honest", "--seeds", "1", "--cycles", "1", "--plot", str(tmp_path)]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    [row] = document["results"]
    assert row["scenario"] == "honest" and row["verdict"] == "control"
    assert row["advantage"]["mean"] == 0 and row["honest"]["mean"] > 0
    assert document["settings"]["knobs"]["share_percent"] == 20
    for name in ("advantage.png", "profit.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scenario", "bribe"], "unknown scenario bribe"),
        (["--share", "0"], "--share"),
        (["--subsidy-cap", "5"], "--subsidy-cap is one of 1, 2, 3, 4, 6 and 9"),
        (["--plot", __file__], "is a file, not a directory"),
    ],
)
def test_bad_options_fail_clearly(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["sim", *arguments])
    assert result.exit_code in (1, 2) and message in result.output and "Traceback" not in result.output


def test_the_largest_population_fits_the_founders_allocation() -> None:
    """`--sybil-keys 8`: twelve node keys and five accounts get their genesis grants."""
    nodes = [Node("m", sim_key(f"n{i}"), sim_key(f"c{i}"), 1) for i in range(12)]
    state = genesis(nodes, [sim_key(f"a{i}") for i in range(5)], Economy()).app_state
    assert sum(1 for b in state.bank.balances if int(b.amount) == BALANCE) == 17
