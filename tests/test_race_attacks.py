"""The Race's attacks from the security review, each a regression test (C2, C3, M2, M4, M7, M8).

Each test would fail if its defence were removed: the chain's own verdict from a vote's counts (C2), majority
verification with escalation (C3), registration that proves possession of the consensus key (M7), committees
drawn once per cycle and votes in bounded transactions (M2, M8). The votes here are what an honest validator's
`verify_nonces` reports (none or all of the opened nonces failed) or what a liar sends.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from racenet.chain.app_state import AppState
from racenet.chain.errors import Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.modules import race
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.race import (
    MsgCommitProof,
    MsgRegisterNode,
    MsgReveal,
    MsgVote,
    Params,
    Phase,
    ProofTree,
    RaceGenesis,
    RaceNode,
    register_node_msg,
)
from racenet.chain.modules.race.selection import WeightedPool, assign_validators
from racenet.chain.modules.race.types import SAMPLE_SIZE, VERDICT_TABLE
from racenet.cli.race import _claims_table
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PrivateKey
from racenet.pow.decision import verdict_table
from tests.chain import CHAIN_ID, GENESIS_TIME, balances, key, with_beacon
from tests.test_race_chain import PARAMS, RaceChain

GENESIS_BEACON_NODES = 8


def genesis(weights: list[int], params: Params = PARAMS, extra: list[PrivateKey] = ()) -> Genesis:  # type: ignore[assignment]
    """Nodes key(1..) with these genesis weights (consensus keys key(101..)), and funded `extra` accounts."""
    nodes = [key(1 + i) for i in range(len(weights))]
    race_nodes = tuple(
        RaceNode(k.public_key.address, key(101 + i).public_key.raw, w)
        for i, (k, w) in enumerate(zip(nodes, weights, strict=True))
    )
    validators = [GenesisValidator(key(101 + i).public_key.raw, w) for i, w in enumerate(weights)]
    state = AppState(
        bank=BankGenesis(balances=balances([*nodes, *extra])), race=RaceGenesis(params=params, nodes=race_nodes)
    )
    return Genesis(chain_id=CHAIN_ID, genesis_time=GENESIS_TIME, validators=validators, app_state=state)


def start(path: Path, weights: list[int], params: Params = PARAMS) -> tuple[RaceChain, list[PrivateKey]]:
    c = RaceChain.start(path, genesis(weights, params))
    return RaceChain(c.app, c.driver), [key(1 + i) for i in range(len(weights))]


def tree(node: PrivateKey, count: int) -> ProofTree:
    return ProofTree(node.public_key.raw, list(range(count)))


def run_claims(chain: RaceChain, claims: dict[PrivateKey, int]) -> dict[PrivateKey, ProofTree]:
    """Commit and reveal a claim of `count` leaves for each node; the proof trees."""
    proofs = {node: tree(node, count) for node, count in claims.items()}
    chain.until(Phase.RACE)
    chain.block()
    assert chain.send_all([(n, MsgCommitProof(0, t.root, t.count)) for n, t in proofs.items()]) == [0] * len(proofs)
    chain.until(Phase.REVEAL)
    chain.block()
    reveals = [(n, MsgReveal(0, t.open(chain.challenged(n)))) for n, t in proofs.items()]
    assert chain.send_all(reveals) == [0] * len(reveals)
    return proofs


def failed_all(chain: RaceChain, participant: bytes) -> MsgVote:
    """An honest vote on a garbage claim: every opened nonce failed to reproduce."""
    revealed = chain.app.race.keeper.reveals.get(chain.app.read_context(), (0, participant))
    assert revealed is not None
    return MsgVote(cycle=0, participant=participant, failed=tuple(range(len(revealed.nonces))))


def passed_all(participant: bytes) -> MsgVote:
    return MsgVote(cycle=0, participant=participant, failed=())


def weight(chain: RaceChain, node: PrivateKey) -> int:
    return chain.weight(node)


def test_the_verdict_table_is_the_decision_analysis() -> None:
    """The chain's integer table is what `pow/decision.py` derives for the chain's sample size: no failure
    tolerated below a full sample, and two of 32 in a full one."""
    assert Params().sample_size == SAMPLE_SIZE == 32
    assert Params().verdict_table == VERDICT_TABLE == verdict_table(SAMPLE_SIZE)
    p = Params()
    assert [p.verdict(n, 1) for n in range(1, 33)] == [False] * 31 + [True]
    assert p.verdict(32, 2) and not p.verdict(32, 3) and not p.verdict(0, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"verdict_table": (0,) * 4 + (4,)},  # a full sample whose every nonce failed would pass
        {"verdict_table": (0, 1, 0, 0, 0)},  # one of one failed would pass (C2)
        {"verdict_table": (0,) * 4},  # one entry short
        {"race_blocks": 1},  # no block to commit in after the seed's
        {"weight_cap_percent": -1},
    ],
)
def test_params_that_would_accept_garbage_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(PARAMS, **change).validate()  # type: ignore[arg-type]


def test_sybils_with_one_garbage_nonce_get_no_weight(tmp_path: Path) -> None:
    """C2: 40 sybils each register a key, commit count 1 and reveal one garbage nonce. Each opens its only
    nonce, the honest committee reports it failed, and one failure among one opened rejects: no sybil gets
    weight or validator power, while the honest nodes get theirs."""
    sybils = [key(300 + i) for i in range(40)]
    c = RaceChain.start(tmp_path, genesis([10, 10, 10], extra=sybils))
    chain = RaceChain(c.app, c.driver)
    honest = [key(1), key(2), key(3)]
    registrations = [(s, register_node_msg(key(400 + i), CHAIN_ID, s.public_key.address)) for i, s in enumerate(sybils)]
    assert chain.send_all(registrations) == [0] * len(sybils)
    run_claims(chain, {**{h: 20 for h in honest}, **dict.fromkeys(sybils, 1)})
    chain.until(Phase.VOTE)
    chain.block()
    votes = []
    for node in [*honest, *sybils]:
        address = node.public_key.address
        for v in chain.assigned(node):
            votes.append((next(h for h in honest if h.public_key.address == v), address))
    msgs = [
        (voter, passed_all(p) if p in {h.public_key.address for h in honest} else failed_all(chain, p))
        for voter, p in votes
    ]
    assert chain.send_all(msgs) == [0] * len(msgs)
    chain.until(Phase.RACE, cycle=1)
    assert [chain.outcome(s) for s in sybils] == ["rejected"] * 40
    assert [weight(chain, s) for s in sybils] == [0] * 40
    assert [weight(chain, h) for h in honest] == [20, 20, 20]
    ctx = chain.app.read_context()
    powers = [chain.app.validators.keeper.power(ctx, key(400 + i).public_key.raw) for i in range(40)]
    assert powers == [0] * 40


def colluding_cycle(
    tmp_path: Path,
    colluder_share: int,
    committee: int = 3,
    at_escalation: Callable[[RaceChain, PrivateKey, PrivateKey], None] = lambda chain, b, a: None,
) -> tuple[RaceChain, list[PrivateKey], PrivateKey, PrivateKey]:
    """Five honest nodes, a heavy colluding validator B and a light participant A whose garbage B vouches for.
    B and A together hold `colluder_share` percent of the weight; B also votes every honest claim down, and
    both vote the same way again when the claims escalate. Committees have `committee` members;
    `at_escalation` looks at the chain when the escalation window opens."""
    attacker_weight = 1
    b_weight = colluder_share - attacker_weight
    honest_each = (100 - colluder_share) // 5
    chain, nodes = start(tmp_path, [honest_each] * 5 + [b_weight, attacker_weight], replace_k(committee))
    honest, b, a = nodes[:5], nodes[5], nodes[6]
    run_claims(chain, {**dict.fromkeys(honest, 20), b: 20, a: 1000})
    colluders = {b.public_key.address, a.public_key.address}

    def lie(voter: PrivateKey, participant: bytes) -> MsgVote:
        garbage = participant == a.public_key.address
        if voter.public_key.address in colluders:
            return passed_all(participant) if garbage else failed_all(chain, participant)
        return failed_all(chain, participant) if garbage else passed_all(participant)

    by_address = {n.public_key.address: n for n in nodes}
    chain.until(Phase.VOTE)
    chain.block()
    if committee == len(nodes) - 1:
        assert b.public_key.address in chain.assigned(a), "B sits on A's committee"
    committee_votes = [
        (by_address[v], lie(by_address[v], p.public_key.address)) for p in nodes[:7] for v in chain.assigned(p)
    ]
    assert chain.send_all(committee_votes) == [0] * len(committee_votes)
    chain.until(Phase.ESCALATE)
    chain.block()
    at_escalation(chain, b, a)
    escalated = [p for _, p in chain.app.race.keeper.escalated.keys(chain.app.read_context(), (0,))]
    assert a.public_key.address in escalated or not any(v in colluders for v in chain.assigned(a)), (
        "a garbage claim the colluders vouch for is escalated as soon as an honest member votes"
    )
    assignments = {
        n: chain.app.race.keeper.query_assignments(chain.app.read_context(), n.public_key.address) for n in nodes
    }
    late = [(n, lie(n, p)) for n in nodes for p in assignments[n].participants if p in escalated]
    assert chain.send_all(late) == [0] * len(late)
    chain.until(Phase.RACE, cycle=1)
    return chain, honest, b, a


def replace_k(k: int) -> Params:
    return dataclasses.replace(PARAMS, validators_per_participant=k)


@pytest.mark.parametrize("colluder_share", [28, 49])
@pytest.mark.parametrize("committee", [3, 6])
def test_a_colluding_minority_can_neither_pass_garbage_nor_reject_honest_claims(
    tmp_path: Path, colluder_share: int, committee: int
) -> None:
    """C3 at 28% and 49% of weight: every claim the colluders disagree on escalates to all weight holders, the
    honest majority decides it, the garbage claim gets nothing, every honest claim its count, and the colluders
    are recorded on the losing side of each escalated decision. With committees of 6 (everyone but the
    participant), B certainly sits on A's committee and vouches for its garbage."""
    chain, honest, b, a = colluding_cycle(tmp_path, colluder_share, committee)
    assert chain.outcome(a) == "rejected" and weight(chain, a) == 0
    assert [chain.outcome(h) for h in honest] == ["accepted"] * 5
    assert [weight(chain, h) for h in honest] == [20] * 5
    ctx = chain.app.read_context()
    outcomes = [chain.app.race.keeper.outcomes.get(ctx, n.public_key.address) for n in [*honest, a]]
    escalated = sum(1 for o in outcomes if o is not None and o.escalated)
    assert escalated >= 1
    misvotes = chain.app.race.keeper.query_misvotes(ctx, None).misvotes
    losers = {m.voter for m in misvotes}
    assert losers <= {b.public_key.address, a.public_key.address} and b.public_key.address in losers
    assert sum(m.count for m in misvotes if m.voter == b.public_key.address) >= 1
    chain.block()  # cycle 1's first block counts cycle 0's misvotes as misjudgements
    misjudged = chain.app.verification.keeper.misjudged.get(chain.app.read_context(), (0, b.public_key.address))
    assert misjudged == sum(m.count for m in misvotes if m.voter == b.public_key.address), "B loses cycle 0's rewards"


def test_race_status_shows_each_claims_committee_votes_escalation_and_standing(tmp_path: Path) -> None:
    """The race/claims query and `racenet race status`'s table: A's committee, B's vouching vote against the
    honest rejections, the escalation."""
    seen: list[str] = []

    def look(chain: RaceChain, b: PrivateKey, a: PrivateKey) -> None:
        r = chain.app.query("race/claims", b"")
        assert r.code == 0, r.log
        claims = race.CLAIMS.decode(json.loads(r.value)).claims
        claim = next(c for c in claims if c.participant == a.public_key.address)
        assert claim.committee == tuple(chain.assigned(a)) and b.public_key.address in claim.committee
        assert claim.revealed and claim.escalated and claim.standing == "rejected"  # the honest 72% already voted
        votes = {v.voter: v.accept for v in claim.votes}
        assert votes[b.public_key.address] is True and False in votes.values()
        console = Console(width=400, record=True)
        console.print(_claims_table(claims))
        seen.append(console.export_text())

    colluding_cycle(tmp_path, 28, committee=6, at_escalation=look)
    table = seen[0]
    a_row = next(line for line in table.splitlines() if encode_address(key(7).public_key.address) in line)
    assert "yes" in a_row and "rejected" in a_row


def test_every_committee_is_recomputed_from_the_challenge_seed_and_the_weights(tmp_path: Path) -> None:
    recomputed: list[int] = []

    def recompute(chain: RaceChain, b: PrivateKey, a: PrivateKey) -> None:
        claims = race.CLAIMS.decode(json.loads(chain.app.query("race/claims", b"").value)).claims
        cycle = race.CYCLE.decode(json.loads(chain.app.query("race/cycle", b"").value))
        nodes = race.NODES.decode(json.loads(chain.app.query("race/nodes", b"").value)).nodes
        pool = WeightedPool([(n.address, n.weight) for n in nodes])
        for c in claims:
            assert set(c.committee) == set(assign_validators(pool, cycle.challenge_seed, c.participant, 3))
            recomputed.append(len(c.committee))

    colluding_cycle(tmp_path, 28, committee=3, at_escalation=recompute)
    assert recomputed == [3] * 7


def test_escalation_votes_come_only_from_weight_holders_on_escalated_claims(tmp_path: Path) -> None:
    """The escalation window opens only unsettled claims, and only to accounts that hold weight this cycle."""
    outsider = key(77)
    c = RaceChain.start(tmp_path, genesis([10, 10, 10], extra=[outsider]))
    chain = RaceChain(c.app, c.driver)
    nodes = [key(1), key(2), key(3)]
    run_claims(chain, dict.fromkeys(nodes, 8))
    chain.until(Phase.VOTE)
    chain.block()
    settled, unsettled = nodes[1], nodes[0]
    by_address = {n.public_key.address: n for n in nodes}
    votes = [(by_address[v], passed_all(settled.public_key.address)) for v in chain.assigned(settled)]
    assert chain.send_all(votes) == [0] * len(votes)
    chain.until(Phase.ESCALATE)
    chain.block()
    late_member = by_address[chain.assigned(unsettled)[0]]
    codes = chain.send_all(
        [
            (outsider, passed_all(unsettled.public_key.address)),
            (unsettled, passed_all(unsettled.public_key.address)),
            (late_member, passed_all(settled.public_key.address)),
            (late_member, passed_all(unsettled.public_key.address)),
        ]
    )
    assert codes == [Code.UNAUTHORIZED, Code.UNAUTHORIZED, Code.UNAUTHORIZED, 0]


def test_a_consensus_key_cannot_be_squatted(tmp_path: Path) -> None:
    """M7: registering another validator's consensus key needs that key's signature of the registering account.
    A made-up proof, a proof by the squatter's own key and the victim's real proof replayed from the mempool
    under the squatter's account are all refused; the victim then registers its own key."""
    victim, squatter, victim_key = key(50), key(51), key(150)
    c = RaceChain.start(tmp_path, genesis([10, 10, 10], extra=[victim, squatter]))
    chain = RaceChain(c.app, c.driver)
    victim_msg = register_node_msg(victim_key, CHAIN_ID, victim.public_key.address)
    own_key_proof = register_node_msg(squatter, CHAIN_ID, squatter.public_key.address).proof
    other_chain = register_node_msg(victim_key, "other-chain", squatter.public_key.address)
    attempts = [
        MsgRegisterNode(victim_key.public_key.raw, b"\x00" * 64),
        MsgRegisterNode(victim_key.public_key.raw, own_key_proof),
        victim_msg,
        other_chain,
    ]
    assert chain.send_all([(squatter, m) for m in attempts]) == [Code.UNAUTHORIZED] * 4
    assert chain.send(victim, victim_msg) == 0
    ctx = chain.app.read_context()
    assert chain.app.race.keeper.node_of(ctx, victim_key.public_key.raw) == victim.public_key.address


def test_a_thousand_participant_cycle(tmp_path: Path) -> None:
    """M2/M8: 1,000 newcomers commit and reveal; committees are drawn once, at the vote window's first block; the
    three weight holders each check about 667 claims in transactions of at most `max_msgs_per_tx` votes; the
    tally reads each claim's committee and votes once. Every claim is decided and gets its count."""
    newcomers = [key(1000 + i) for i in range(1000)]
    base = with_beacon(genesis([10, 10, 10], extra=newcomers))
    race = base.app_state.race
    joined = tuple(RaceNode(n.public_key.address, key(5000 + i).public_key.raw, 0) for i, n in enumerate(newcomers))
    state = dataclasses.replace(base.app_state, race=dataclasses.replace(race, nodes=(*race.nodes, *joined)))
    c = RaceChain.start(tmp_path, dataclasses.replace(base, app_state=state))
    chain = RaceChain(c.app, c.driver)
    validators = [key(1), key(2), key(3)]
    run_claims(chain, {**dict.fromkeys(validators, 5), **dict.fromkeys(newcomers, 2)})
    chain.until(Phase.VOTE)
    chain.block()
    per_tx = chain.app.auth.keeper.params.get(chain.app.read_context()).max_msgs_per_tx
    txs = []
    for v in validators:
        duties = chain.app.race.keeper.query_assignments(chain.app.read_context(), v.public_key.address).participants
        assert len(duties) > 600
        for i in range(0, len(duties), per_tx):
            txs.append(chain.tx(v, *[passed_all(p) for p in duties[i : i + per_tx]]))
    result = chain.block(*txs)
    assert [r.code for r in result.tx_results] == [0] * len(txs)
    chain.until(Phase.RACE, cycle=1)
    ctx = chain.app.read_context()
    weights = [chain.app.race.keeper.weight(ctx, n.public_key.address) for n in newcomers]
    assert weights == [2] * 1000
    assert chain.app.race.keeper.escalated.keys(ctx, (0,)) == []
