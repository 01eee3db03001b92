"""The random beacon on a real 4-validator CometBFT devnet: rounds carried in vote extensions every block,
every Race seed drawn from a round, each round verifiable offline from the group key, new groups taking
over at each cycle without a gap, and one validator of four killed without stopping the beacon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from racenet.chain.modules import beacon, race
from racenet.chain.modules.beacon import Group, Round
from racenet.chain.modules.beacon.verify import verify_chain
from racenet.chain.modules.race import Schedule
from racenet.chain.modules.race.module import challenge_seed, race_seed
from racenet.cli.devnet import devnet
from racenet.devnet import Devnet
from racenet.node.client import ChainClient
from tests.network.conftest import BLOCK_TIME, stop_devnet
from tests.network.netutil import free_base_port, wait_for

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def beacon_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("beacon") / "net"
    try:
        args = ["up", "--dir", str(directory), "--block-time", BLOCK_TIME, "--compute-budgets", "0,0,0,0"]
        result = CliRunner().invoke(devnet, [*args, "--base-port", str(free_base_port(4))])
        assert result.exit_code == 0, result.output
        yield directory
    finally:
        stop_devnet(directory)


def all_rounds(client: ChainClient) -> list[Round]:
    """Every round the chain recorded, oldest first."""
    latest = client.query(beacon.STATUS).latest
    rounds: list[Round] = []
    first = 1
    while latest is not None and first <= latest.round:
        page = client.query(beacon.ROUNDS, f"{first}:100").rounds
        rounds.extend(page)
        first += 100
    return rounds


def round_after(rounds: list[Round], height: int, block: int) -> int:
    """The chain's rule, recomputed from round records: the first round whose partials were first made at
    an extension height ≥ `height`, as known at the start of block `block`."""
    before = [r for r in rounds if r.height < block]
    latest = before[-1] if before else None
    if latest is not None and latest.height >= height:
        return latest.round + 1
    return (latest.round if latest else 0) + 2


def test_every_seed_is_a_beacon_round_verifiable_offline_and_groups_hand_over(beacon_dir: Path) -> None:
    net = Devnet.open(beacon_dir)
    client = ChainClient(net.state.nodes[0].rpc_url, timeout=10)
    schedule_params = client.query(race.PARAMS)
    length = Schedule(schedule_params, 1).length
    wait_for("the beacon's second group (cycle 1) to sign", lambda: _epoch_signing(client, 1), timeout=240)
    cycle = client.query(race.CYCLE)
    rounds = all_rounds(client)
    groups = client.query(beacon.GROUPS).groups
    assert verify_chain(rounds, groups) == [], "every round verifies offline under its group's key"
    heights = [r.height for r in rounds]
    assert heights == list(range(heights[0], heights[0] + len(heights))), "a round in every block, no gap"
    assert [g.epoch for g in groups][:2] == [0, 1]
    penalized = {(p.cycle, p.address) for p in client.query(beacon.PENALTIES).penalties if p.reason == "no dealing"}
    for group in groups:
        holders = {h.address for h in group.holders}
        assert group.dealers and set(group.dealers) <= holders, "a group is dealt by some of its holders"
        absent = holders - set(group.dealers)
        assert all((group.epoch, a) in penalized for a in absent), "a holder that did not deal (a node slowed by load) is penalized"
    handover = next(r for r in rounds if r.epoch == 1)
    before = next(r for r in rounds if r.round == handover.round - 1)
    assert before.epoch == 0 and handover.previous == before.output, "the new group chains on the old one's output"
    assert cycle.race_round and cycle.race_seed == race_seed(by_round(rounds, cycle.race_round).output, cycle.cycle)
    start = cycle.phase_starts[race.Phase.RACE]
    assert cycle.race_round == round_after(rounds, start - 1, start), "bound to the first round nobody knew before"
    assert length > 0
    client.close()


def test_a_past_challenge_seed_is_recomputed_from_chain_data(beacon_dir: Path) -> None:
    net = Devnet.open(beacon_dir)
    client = ChainClient(net.state.nodes[1].rpc_url, timeout=10)
    cycle = wait_for("a challenge seed", lambda: _challenge(client), timeout=120)
    rounds = all_rounds(client)
    reveal = cycle.phase_starts[race.Phase.REVEAL]
    assert cycle.challenge_round == round_after(rounds, reveal - 1, reveal)
    assert cycle.challenge_seed == challenge_seed(by_round(rounds, cycle.challenge_round).output, cycle.cycle)
    client.close()


def test_killing_one_of_four_validators_does_not_stop_the_beacon(beacon_dir: Path) -> None:
    net = Devnet.open(beacon_dir)
    victim = net.state.nodes[3]
    client = ChainClient(net.state.nodes[0].rpc_url, timeout=10)
    net.stop_node(victim, hard=True)
    try:
        killed_at = client.height()
        wait_for("10 more blocks without node4", lambda: client.height() >= killed_at + 10 or None, timeout=120)
        rounds = [r for r in all_rounds(client) if r.height > killed_at + 1]
        assert len(rounds) >= 8 and [r.round for r in rounds] == list(range(rounds[0].round, rounds[-1].round + 1))
        assert verify_chain(rounds, client.query(beacon.GROUPS).groups) == []
    finally:
        Devnet.open(beacon_dir).start()
        client.close()


def by_round(rounds: list[Round], number: int) -> Round:
    return next(r for r in rounds if r.round == number)


def _epoch_signing(client: ChainClient, epoch: int) -> Group | None:
    status = client.query(beacon.STATUS)
    group = status.group
    if group is None or group.epoch < epoch or status.latest is None or status.latest.epoch < epoch:
        return None
    return group


def _challenge(client: ChainClient) -> race.CycleInfo | None:
    cycle = client.query(race.CYCLE)
    return cycle if cycle.challenge_seed else None
