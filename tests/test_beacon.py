"""The random beacon on an in-process chain of four validators: rounds, key generation, faults and draws.

Each test runs real BLS12-381 threshold signatures through the Driver's simulated vote extensions
(the same App code paths CometBFT drives). Hostile validators are agents that withhold, forge or
deal badly; every assertion would fail if the defence it names were removed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from racenet.abci.driver import Driver, Validator
from racenet.chain.app import App
from racenet.chain.app_state import AppState
from racenet.chain.codec import encode
from racenet.chain.genesis import Genesis
from racenet.chain.module import Context
from racenet.chain.modules.beacon import (
    BEACON_TX_PREFIX,
    BeaconBlock,
    Keeper,
    parse_beacon_tx,
    round_message,
    round_output,
)
from racenet.chain.modules.beacon.dkg import holder_of
from racenet.chain.modules.beacon.types import Answer, Dealing, Epoch, Extension, Partial, RevealedShare
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.modules.race.module import race_seed
from racenet.crypto.threshold import combine, g2, sign, verify
from racenet.node.beacon_agent import BeaconAgent
from tests.chain import CHAIN_ID, GENESIS_TIME, Chain, beacon_validators, key, with_beacon

NODES = [key(1), key(2), key(3), key(4)]
CONSENSUS = [key(101), key(102), key(103), key(104)]
RACE = RaceParams(race_blocks=6, reveal_blocks=2, vote_blocks=1, escalation_blocks=1)


def genesis() -> Genesis:
    nodes = tuple(RaceNode(k.public_key.address, c.public_key.raw, 10) for k, c in zip(NODES, CONSENSUS, strict=True))
    return with_beacon(
        Genesis(chain_id=CHAIN_ID, genesis_time=GENESIS_TIME, app_state=AppState(race=RaceGenesis(RACE, nodes=nodes)))
    )


class SilentSigner(BeaconAgent):
    """Sends no partial signatures (but deals and reveals, so it holds shares and mixes in)."""

    def partials(self, ctx: Context, keeper: Keeper, me: bytes, height: int, block: BeaconBlock | None):  # type: ignore[no-untyped-def]
        return 0, ()


class Withholding(SilentSigner):
    """Sends neither partial signatures nor reveals."""

    def contents(self, ctx: Context, keeper: Keeper, me: bytes, height: int, block: BeaconBlock | None) -> Extension:
        return dataclasses.replace(super().contents(ctx, keeper, me, height, block), reveals=())


class Forging(BeaconAgent):
    """Signs the pending round with the wrong shares."""

    def partials(self, ctx: Context, keeper: Keeper, me: bytes, height: int, block: BeaconBlock | None):  # type: ignore[no-untyped-def]
        round_, honest = super().partials(ctx, keeper, me, height, block)
        to_sign = keeper.round_to_sign(ctx, height, block)
        if not honest or to_sign is None:
            return round_, honest
        return round_, tuple(Partial(p.index, sign(p.index + 7, to_sign[1])) for p in honest)


class MalformedDealer(BeaconAgent):
    """Deals one commitment too few."""

    def dealing(self, ctx: Context, setup: Epoch) -> Dealing:
        honest = super().dealing(ctx, setup)
        return dataclasses.replace(honest, commitments=honest.commitments[:-1])


class CheatingDealer(BeaconAgent):
    """Sends node 1 a share that does not match its commitments, and never answers the complaint."""

    def dealing(self, ctx: Context, setup: Epoch) -> Dealing:
        honest = super().dealing(ctx, setup)
        victim = holder_of(setup, NODES[0].public_key.address)
        assert victim is not None
        shares = list(honest.shares)
        shares[victim.first - 1] = bytes(32)
        return dataclasses.replace(honest, shares=tuple(shares))

    def answers(self, ctx, keeper, me, setup):  # type: ignore[no-untyped-def]
        return ()


class WrongRevealer(BeaconAgent):
    """Reveals a value that is not the one it committed to."""

    def contents(self, ctx: Context, keeper: Keeper, me: bytes, height: int, block: BeaconBlock | None) -> Extension:
        honest = super().contents(ctx, keeper, me, height, block)
        return dataclasses.replace(honest, reveals=tuple(bytes(31) + b"\x01" for _ in honest.reveals))


class AbsentDealer(BeaconAgent):
    """Holds shares of the key generation but never deals."""

    def contents(self, ctx: Context, keeper: Keeper, me: bytes, height: int, block: BeaconBlock | None) -> Extension:
        return dataclasses.replace(super().contents(ctx, keeper, me, height, block), dealings=())


class WrongAnswerDealer(CheatingDealer):
    """Cheats node 1 of its share, and answers the complaint with the same wrong share."""

    def answers(self, ctx, keeper, me, setup):  # type: ignore[no-untyped-def]
        victim = holder_of(setup, NODES[0].public_key.address)
        assert victim is not None
        complained = keeper.complaints.has(ctx, (setup.epoch, me, victim.address))
        if not complained or keeper.answers.has(ctx, (setup.epoch, me, victim.address)):
            return ()
        return (Answer(setup.epoch, victim.address, tuple(RevealedShare(i, bytes(32)) for i in victim.indices)),)


def start(path: Path, agents: dict[int, type[BeaconAgent]] | None = None) -> Chain:
    """A four-validator chain whose validator i runs `agents[i]` (an honest agent otherwise)."""
    g = genesis()
    validators = []
    for i, v in enumerate(beacon_validators(g)):
        cls = (agents or {}).get(i, BeaconAgent)
        honest = v.agent
        assert isinstance(honest, BeaconAgent)
        validators.append(Validator(v.consensus_key, cls(honest.secret, honest.consensus_key)))
    path.mkdir(parents=True, exist_ok=True)
    app = App(path / "app.db")
    driver = Driver(app, validators)
    driver.init_chain(g)
    return Chain(app, driver)


def run(chain: Chain, blocks: int) -> None:
    for _ in range(blocks):
        chain.block()


def outputs(chain: Chain) -> dict[int, bytes]:
    ctx = chain.app.read_context()
    return {n: r.output for n, r in chain.app.beacon.keeper.rounds.items(ctx)}


def penalties(chain: Chain) -> set[tuple[bytes, str]]:
    ctx = chain.app.read_context()
    return {(a, reason) for _, a, reason in chain.app.beacon.keeper.penalties.keys(ctx)}


def test_rounds_chain_and_verify_under_the_group_key(tmp_path: Path) -> None:
    chain = start(tmp_path)
    run(chain, 20)
    ctx = chain.app.read_context()
    beacon = chain.app.beacon.keeper
    group = beacon.groups.get(ctx, 0)
    assert group is not None and [h.count for h in group.holders] == [3, 3, 3, 3] and group.threshold == 7
    rounds = [r for _, r in beacon.rounds.items(ctx)]
    assert [r.round for r in rounds] == list(range(1, len(rounds) + 1)) and len(rounds) >= 10
    previous = beacon.genesis_output(ctx)
    for r in rounds:
        assert r.previous == previous and r.output == round_output(r.signature)
        assert verify(g2(group.public_key), round_message(r.round, r.previous, r.mix), r.signature)
        previous = r.output
    heights = [r.height for r in rounds]
    assert heights == list(range(heights[0], heights[0] + len(heights)))  # one round every block, no gap


def test_any_qualified_subset_gives_the_same_output(tmp_path: Path) -> None:
    """A holder below the threshold withholding its partials neither stops nor changes any round."""
    honest = start(tmp_path / "honest")
    run(honest, 24)
    for silent in (0, 3):
        chain = start(tmp_path / f"silent{silent}", {silent: SilentSigner})
        run(chain, 24)
        assert outputs(chain) == outputs(honest) and len(outputs(chain)) >= 15


def test_a_coalition_below_the_threshold_cannot_sign(tmp_path: Path) -> None:
    """Two of four equal holders (6 of 12 shares, threshold 7) cannot produce a round: they cannot predict it."""
    chain = start(tmp_path)
    run(chain, 10)
    ctx = chain.app.read_context()
    beacon = chain.app.beacon.keeper
    group = beacon.groups.get(ctx, 0)
    assert group is not None
    to_sign = beacon.round_to_sign(ctx, chain.app.height + 1, None)
    assert to_sign is not None
    partials: dict[int, bytes] = {}
    for v in chain.driver.validators[:2]:
        agent = v.agent
        assert isinstance(agent, BeaconAgent)
        me = chain.app.race.keeper.node_of(ctx, agent.consensus_key)
        partials.update({i: sign(s, to_sign[1]) for i, s in agent.shares(ctx, beacon, me, group).items()})
    assert len(partials) == 6 < group.threshold
    with pytest.raises(ValueError):
        combine(partials, group.threshold)
    forged = combine({**partials, 12: sign(12345, to_sign[1])}, group.threshold)  # a guess for the 7th share
    assert not verify(g2(group.public_key), to_sign[1], forged)


def test_withheld_reveals_are_penalized_and_do_not_stop_rounds(tmp_path: Path) -> None:
    chain = start(tmp_path, {2: Withholding})
    schedule = chain.app.race.keeper.schedule(chain.app.read_context())
    run(chain, schedule.cycle_start(1) + 4)
    withholder = NODES[2].public_key.address
    assert (withholder, "no reveal") in penalties(chain)
    assert not any(a != withholder for a, _ in penalties(chain))
    heights = [r.height for _, r in chain.app.beacon.keeper.rounds.items(chain.app.read_context())]
    assert len(heights) >= schedule.cycle_start(1) - 10
    assert heights == list(range(heights[0], heights[0] + len(heights)))  # a round every block, no gap


def test_a_wrong_reveal_is_penalized_and_left_out_of_the_mix(tmp_path: Path) -> None:
    chain = start(tmp_path, {1: WrongRevealer})
    schedule = chain.app.race.keeper.schedule(chain.app.read_context())
    run(chain, schedule.cycle_start(1) + 4)
    liar = NODES[1].public_key.address
    assert {(a, r) for a, r in penalties(chain)} == {(liar, "wrong reveal")}
    heights = [r.height for _, r in chain.app.beacon.keeper.rounds.items(chain.app.read_context())]
    assert heights == list(range(heights[0], heights[0] + len(heights))) and len(heights) >= 10


def test_forged_partial_is_detected_and_its_sender_penalized(tmp_path: Path) -> None:
    chain = start(tmp_path, {1: Forging})
    run(chain, 14)
    forger = NODES[1].public_key.address
    assert (forger, "forged partial signature") in penalties(chain)
    assert {a for a, _ in penalties(chain)} == {forger}
    assert len(outputs(chain)) >= 5  # the other three holders (9 shares) still complete every round


def test_a_proposal_that_flags_an_honest_partial_as_forged_is_rejected(tmp_path: Path) -> None:
    chain = start(tmp_path)
    run(chain, 10)
    driver, app = chain.driver, chain.app
    proposal = driver.propose([], GENESIS_TIME + app.height + 1)
    raw = proposal.txs[0]
    block = parse_beacon_tx(raw)
    assert block is not None and block.signature and not block.forged
    framed = BEACON_TX_PREFIX + encode(dataclasses.replace(block, forged=(0,)))
    assert not app.process_proposal(dataclasses.replace(proposal, txs=(framed,)))
    wrong = BEACON_TX_PREFIX + encode(dataclasses.replace(block, signature=block.signature[::-1]))
    assert not app.process_proposal(dataclasses.replace(proposal, txs=(wrong,)))
    late = BEACON_TX_PREFIX + encode(dataclasses.replace(block, round=block.round + 1))
    assert not app.process_proposal(dataclasses.replace(proposal, txs=(late,)))
    assert not app.process_proposal(dataclasses.replace(proposal, txs=(b"", raw)))  # only at the head
    assert app.process_proposal(proposal)


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        (MalformedDealer, "bad dealing"),
        (CheatingDealer, "unanswered complaint"),
        (WrongAnswerDealer, "wrong answer to a complaint"),
        (AbsentDealer, "no dealing"),
    ],
)
def test_a_bad_dealing_is_detected_and_its_dealer_penalized(
    tmp_path: Path, agent: type[BeaconAgent], reason: str
) -> None:
    chain = start(tmp_path, {3: agent})
    run(chain, 12)
    cheat = NODES[3].public_key.address
    assert any(a == cheat and r.startswith(reason) for a, r in penalties(chain))
    ctx = chain.app.read_context()
    group = chain.app.beacon.keeper.groups.get(ctx, 0)
    assert group is not None and cheat not in group.dealers and len(group.dealers) == 3
    assert len(outputs(chain)) >= 3  # the group of the honest dealers signs; the cheat's own shares still work


def test_the_race_seed_is_recomputed_from_chain_data(tmp_path: Path) -> None:
    chain = start(tmp_path)
    run(chain, 12)
    ctx = chain.app.read_context()
    bound = chain.app.race.keeper.seed_rounds.get(ctx, 0)
    record = chain.app.beacon.keeper.rounds.get(ctx, bound)
    assert record is not None and chain.app.race.keeper.seed(ctx, 0) == race_seed(round_output(record.signature), 0)


def test_a_hostile_beacon_transaction_is_refused_and_never_breaks_a_block(tmp_path: Path) -> None:
    """A proposer's garbage, padded or stale beacon transaction: ProcessProposal refuses it, and a block that
    carries one anyway (decided by a faulty majority) runs without a failed hook and records no round."""
    chain = start(tmp_path)
    run(chain, 10)
    app = chain.app
    proposal = chain.driver.propose([], GENESIS_TIME + app.height + 1)
    block = parse_beacon_tx(proposal.txs[0])
    assert block is not None
    padded = dataclasses.replace(block, extensions=block.extensions * 3, signature=b"")
    stale = dataclasses.replace(block, ext_height=block.ext_height - 1)
    for hostile in (
        BEACON_TX_PREFIX + b"\xff" * 100,
        BEACON_TX_PREFIX + encode(padded),
        BEACON_TX_PREFIX + encode(stale),
    ):
        assert not app.process_proposal(dataclasses.replace(proposal, txs=(hostile,)))
        latest = app.beacon.keeper.latest.get(app.read_context())
        result = chain.driver.execute(dataclasses.replace(proposal, height=app.height + 1, txs=(hostile,)), check=False)
        assert "hook_failed" not in {e.type for e in result.events}
        assert app.beacon.keeper.latest.get(app.read_context()) == latest
        app.check_invariants()
        proposal = chain.driver.propose([], GENESIS_TIME + app.height + 1)
    run(chain, 3)
    assert app.beacon.keeper.latest.get(app.read_context()) > latest, "the next honest proposers go on"
