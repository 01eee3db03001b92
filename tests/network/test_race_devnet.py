"""The Race on a 4-validator devnet: nodes with different compute budgets race every cycle with no
manual step, their weights follow the nonces they tried, and CometBFT's /validators shows them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from racenet.chain.modules import race
from racenet.chain.modules.race import NodeInfo, Outcome, OutcomeStatus, Phase, Schedule
from racenet.crypto.address import encode_address
from racenet.devnet import Devnet
from racenet.node.client import ChainClient
from tests.network.conftest import running_devnet
from tests.network.netutil import wait_for

pytestmark = pytest.mark.network

BUDGETS = "0.25,0.5,0.75,1"
CHI2_P001_DF3 = 16.27
"""Chi-square critical value at p = 0.001 with 3 degrees of freedom."""


@pytest.fixture(scope="module")
def race_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_devnet(tmp_path_factory, "race", BUDGETS) as directory:
        yield directory


def tallied_cycle(client: ChainClient, at_least: int) -> tuple[int, tuple[NodeInfo, ...]] | None:
    """(cycle, nodes) once every node's last outcome is from one cycle ≥ at_least in which every node raced
    (a node still loading its models when a cycle starts sits that cycle out)."""
    nodes = client.query(race.NODES).nodes
    cycles = {n.last_outcome.cycle if n.last_outcome else -1 for n in nodes}
    raced = all(n.last_outcome is not None and n.last_outcome.status != OutcomeStatus.ABSENT for n in nodes)
    if len(cycles) == 1 and min(cycles) >= at_least and raced:
        return cycles.pop(), nodes
    return None


def test_weights_follow_nonces_tried_and_become_validator_power(race_dir: Path) -> None:
    net = Devnet.open(race_dir)
    client = ChainClient(net.state.nodes[0].rpc_url, timeout=10)
    cycle, nodes = wait_for("a fully raced cycle to be tallied", lambda: tallied_cycle(client, 2), timeout=300)

    outcomes = {encode_address(n.address): n.last_outcome for n in nodes}
    tried, found = [], []
    for record in net.state.nodes:
        state = json.loads((net.state.home(record) / "race" / f"cycle-{cycle}.json").read_text())
        outcome = outcomes[record.account]
        assert outcome is not None and outcome.status == OutcomeStatus.ACCEPTED, outcome
        assert outcome.weight == outcome.claimed == len(state["nonces"]) > 0
        tried.append(state["tried"])
        found.append(len(state["nonces"]))

    expected = [sum(found) * t / sum(tried) for t in tried]
    chi2 = sum((f - e) ** 2 / e for f, e in zip(found, expected, strict=True))
    print(f"cycle {cycle}: tried {tried}, found {found}, expected {[round(e, 1) for e in expected]}, chi2 {chi2:.2f}")
    assert chi2 < CHI2_P001_DF3, "weights are not in proportion to the nonces each node tried"

    effective = tally_height(client, cycle) + 2
    wait_for("the new powers to reach CometBFT", lambda: client.height() >= effective, timeout=60)
    validators = client.call("validators", height=str(effective))["validators"]
    powers = {base64.b64decode(v["pub_key"]["value"]): int(v["voting_power"]) for v in validators}
    assert powers == {r.pub_key: weight_of(outcomes[r.account]) for r in net.state.nodes}
    client.close()


def weight_of(outcome: Outcome | None) -> int:
    assert outcome is not None
    return outcome.weight


def tally_height(client: ChainClient, cycle: int) -> int:
    """The height whose end-block tallied `cycle` (CometBFT applies its power changes two heights later)."""
    length = Schedule(client.query(race.PARAMS), 1).length
    now = client.query(race.CYCLE)
    return now.phase_starts[Phase.RACE] - (now.cycle - cycle - 1) * length - 1
