"""Who holds the beacon's shares and how many sign (security review of issue 10: rounding must neither hand the
beacon to a minority nor let one stop it).

The threshold is the fewest shares only a set holding more than half of the total weight can hold: checked here
against every subset of holders, for uneven weights where the floor-and-fixed-threshold rule halted the beacon.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from racenet.abci.driver import Driver, Validator
from racenet.chain.app import App
from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis
from racenet.chain.modules.beacon import Params as BeaconParams
from racenet.chain.modules.beacon.dkg import allocate, safe_threshold, share_counts
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.node.beacon_agent import BeaconAgent
from tests.chain import CHAIN_ID, GENESIS_TIME, Chain, beacon_validators, key, with_beacon
from tests.test_beacon import SilentSigner, outputs


def subsets(n: int) -> list[tuple[int, ...]]:
    return [s for r in range(n + 1) for s in itertools.combinations(range(n), r)]


def assert_safe_and_least(weights: list[int], counts: list[int], threshold: int, total: int) -> None:
    """Every set reaching the threshold holds more than half of `total`, and one set just below it does not."""
    reach = [(sum(counts[i] for i in s), sum(weights[i] for i in s)) for s in subsets(len(weights))]
    assert all(2 * weight > total for shares, weight in reach if shares >= threshold)
    assert any(2 * weight <= total for shares, weight in reach if shares >= threshold - 1)


def test_ten_small_honest_holders_outvote_one_at_forty_percent() -> None:
    weights = [6] * 10 + [40]
    counts = share_counts(weights, 64)
    threshold = safe_threshold(list(zip(weights, counts, strict=True)), 100)
    assert sum(counts) == 64
    assert counts[-1] < threshold <= sum(counts[:10])  # the 40% holder cannot sign alone nor stop the others
    assert sum(w * 64 // 100 for w in weights[:10]) < 64 // 2 + 1  # floor shares and a fixed threshold halted here
    assert_safe_and_least(weights, counts, threshold, 100)


def test_random_weights_are_always_safe_and_the_threshold_is_the_least_safe_one() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 9)
        weights = [rng.randint(1, 1000) for _ in range(n)]
        outside = rng.choice([0, 0, rng.randint(1, 2000)])  # weight of nodes outside the group
        counts = share_counts(weights, rng.choice([8, 12, 64]))
        threshold = safe_threshold(list(zip(weights, counts, strict=True)), sum(weights) + outside)
        if threshold:
            assert_safe_and_least(weights, counts, threshold, sum(weights) + outside)
        else:
            assert 2 * sum(weights) <= sum(weights) + outside


def test_no_group_forms_when_the_heaviest_nodes_hold_at_most_half_the_weight() -> None:
    weights = [(bytes([i // 256, i % 256]) * 10, 1) for i in range(1000)]
    keys = {a: b"k" for a, _ in weights}
    epoch = allocate(3, BeaconParams(max_participants=64), weights, keys)
    assert len(epoch.holders) == 64 and epoch.threshold == 0


WEIGHTS = [40, 15, 15, 15, 15]


def test_a_forty_percent_holder_withholding_its_partials_neither_stops_nor_changes_rounds(tmp_path: Path) -> None:
    nodes = [key(1 + i) for i in range(len(WEIGHTS))]
    consensus = [key(101 + i) for i in range(len(WEIGHTS))]
    race = RaceParams(race_blocks=6, reveal_blocks=2, vote_blocks=1, escalation_blocks=1)
    genesis = with_beacon(
        Genesis(
            chain_id=CHAIN_ID,
            genesis_time=GENESIS_TIME,
            app_state=AppState(
                race=RaceGenesis(
                    race,
                    nodes=tuple(
                        RaceNode(n.public_key.address, c.public_key.raw, w)
                        for n, c, w in zip(nodes, consensus, WEIGHTS, strict=True)
                    ),
                )
            ),
        )
    )

    def run(path: Path, heavy: type[BeaconAgent]) -> Chain:
        validators = []
        for i, v in enumerate(beacon_validators(genesis)):
            agent = v.agent
            assert isinstance(agent, BeaconAgent)
            cls = heavy if i == 0 else BeaconAgent
            validators.append(Validator(v.consensus_key, cls(agent.secret, agent.consensus_key)))
        path.mkdir()
        app = App(path / "app.db")
        chain = Chain(app, Driver(app, validators))
        chain.driver.init_chain(genesis)
        for _ in range(24):
            chain.block()
        return chain

    honest = run(tmp_path / "honest", BeaconAgent)
    withheld = run(tmp_path / "withheld", SilentSigner)
    group = honest.app.beacon.keeper.groups.get(honest.app.read_context(), 0)
    assert group is not None
    heavy = next(h for h in group.holders if h.address == nodes[0].public_key.address)
    assert heavy.count < group.threshold <= sum(h.count for h in group.holders) - heavy.count
    rounds = outputs(withheld)
    assert rounds == outputs(honest) and len(rounds) >= 15
    heights = [r.height for _, r in withheld.app.beacon.keeper.rounds.items(withheld.app.read_context())]
    assert heights == list(range(heights[0], heights[0] + len(heights)))  # a round every block, no gap
