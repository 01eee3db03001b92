"""The on-chain Race: schedule, commit → challenge → reveal → vote → tally → validator power."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.errors import Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.race import (
    Leaf,
    MsgCommitProof,
    MsgReveal,
    MsgVote,
    OutcomeStatus,
    Params,
    Phase,
    ProofTree,
    RaceGenesis,
    RaceNode,
    Schedule,
    proof_leaf,
)
from racenet.chain.types import FinalizeBlockResult
from racenet.crypto.keys import PrivateKey
from racenet.crypto.merkle import merkle_proofs, merkle_root
from tests.chain import CHAIN_ID, GENESIS_TIME, Chain, balances, key

PARAMS = Params(
    race_blocks=2, commit_blocks=2, reveal_blocks=2, vote_blocks=2, sample_size=4, validators_per_participant=2
)
NODES = [key(1), key(2), key(3)]
CONSENSUS = [key(101), key(102), key(103)]
GENESIS_WEIGHT = 10


def race_genesis(params: Params = PARAMS) -> Genesis:
    nodes = tuple(
        RaceNode(k.public_key.address, c.public_key.raw, GENESIS_WEIGHT) for k, c in zip(NODES, CONSENSUS, strict=True)
    )
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(c.public_key.raw, GENESIS_WEIGHT) for c in CONSENSUS],
        app_state=AppState(bank=BankGenesis(balances=balances(NODES)), race=RaceGenesis(params=params, nodes=nodes)),
    )


class RaceChain(Chain):
    """A chain with Race helpers: advance to a phase, commit, reveal, vote."""

    @property
    def schedule(self) -> Schedule:
        return self.app.race.keeper.schedule(self.app.read_context())

    def until(self, phase: Phase, cycle: int = 0) -> list[FinalizeBlockResult]:
        """Run empty blocks until the next block is the first of (cycle, phase)."""
        target = self.schedule.phase_starts(cycle)[phase]
        return [self.block() for _ in range(target - 1 - self.app.height)]

    def send(self, signer: PrivateKey, msg: Msg) -> int:
        return self.send_log(signer, msg)[0]

    def send_all(self, pairs: Sequence[tuple[PrivateKey, Msg]]) -> list[int]:
        """Send several messages in one block; their result codes."""
        result = self.block(*[self.tx(k, m) for k, m in pairs])
        return [r.code for r in result.tx_results]

    def send_log(self, signer: PrivateKey, msg: Msg) -> tuple[int, str]:
        r = self.block(self.tx(signer, msg)).tx_results[0]
        return r.code, r.log

    def challenged(self, node: PrivateKey, cycle: int = 0) -> list[int]:
        return self.app.race.keeper.challenged(self.app.read_context(), cycle, node.public_key.address)

    def assigned(self, node: PrivateKey, cycle: int = 0) -> list[bytes]:
        return self.app.race.keeper.assigned(self.app.read_context(), cycle, node.public_key.address)

    def weight(self, node: PrivateKey) -> int:
        return self.app.race.keeper.weight(self.app.read_context(), node.public_key.address)

    def outcome(self, node: PrivateKey) -> OutcomeStatus:
        o = self.app.race.keeper.outcomes.get(self.app.read_context(), node.public_key.address)
        assert o is not None
        return o.status


def by_address(address: bytes) -> PrivateKey:
    return next(k for k in NODES if k.public_key.address == address)


@pytest.fixture
def chain(tmp_path: Path) -> RaceChain:
    c = RaceChain.start(tmp_path, race_genesis())
    return RaceChain(c.app, c.driver)


def trees(counts: list[int]) -> list[ProofTree]:
    return [
        ProofTree(k.public_key.raw, list(range(1000 * i, 1000 * i + n)))
        for i, (k, n) in enumerate(zip(NODES, counts, strict=True))
    ]


def commit_all(chain: RaceChain, proofs: list[ProofTree]) -> None:
    chain.until(Phase.COMMIT)
    pairs = [(node, MsgCommitProof(0, tree.root, tree.count)) for node, tree in zip(NODES, proofs, strict=True)]
    assert chain.send_all(pairs) == [0] * len(pairs)


def reveal_all(chain: RaceChain, proofs: list[ProofTree], nodes: list[PrivateKey] = NODES) -> None:
    chain.until(Phase.REVEAL)
    chain.block()
    pairs = [(node, MsgReveal(0, tree.open(chain.challenged(node)))) for node, tree in zip(nodes, proofs, strict=False)]
    assert chain.send_all(pairs) == [0] * len(pairs)


def vote_all(chain: RaceChain, accept: bool = True, participants: list[PrivateKey] = NODES) -> None:
    chain.until(Phase.VOTE)
    pairs = [(by_address(v), vote(p, accept)) for p in participants for v in chain.assigned(p)]
    assert chain.send_all(pairs) == [0] * len(pairs)


def vote(participant: PrivateKey, accept: bool) -> MsgVote:
    """A cycle-0 verdict on 4 checked nonces: none or all of them failed."""
    return MsgVote(
        cycle=0, participant=participant.public_key.address, accept=accept, checked=4, mismatches=0 if accept else 4
    )


def finish_cycle(chain: RaceChain) -> FinalizeBlockResult:
    return chain.until(Phase.RACE, cycle=1)[-1]


def test_schedule() -> None:
    s = Schedule(PARAMS, start=1)
    assert s.length == 8
    assert [s.phase(h).value for h in range(1, 10)] == ["race"] * 2 + ["commit"] * 2 + ["reveal"] * 2 + ["vote"] * 2 + [
        "race"
    ]
    assert s.cycle(8) == 0 and s.cycle(9) == 1 and s.tally_height(0) == 8


def test_honest_cycle_sets_weights_and_validator_power(chain: RaceChain) -> None:
    proofs = trees([5, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    vote_all(chain)
    tally = finish_cycle(chain)
    assert [chain.weight(k) for k in NODES] == [5, 10, 20]
    assert [chain.outcome(k) for k in NODES] == ["accepted"] * 3
    powers = {u.pub_key: u.power for u in tally.validator_updates}
    assert powers == {CONSENSUS[0].public_key.raw: 5, CONSENSUS[2].public_key.raw: 20}, "10 was already 10"
    ctx = chain.app.read_context()
    assert [chain.app.validators.keeper.power(ctx, c.public_key.raw) for c in CONSENSUS] == [5, 10, 20]
    assert chain.app.race.keeper.commitments.items(ctx, (0,)) == [], "cycle data is cleared"


def test_seeds_are_fixed_at_phase_starts(chain: RaceChain) -> None:
    ctx = chain.app.read_context
    chain.block()
    assert len(chain.app.race.keeper.seed(ctx(), 0)) == 32
    chain.until(Phase.REVEAL)
    assert chain.app.race.keeper.challenges.get(ctx(), 0) is None
    chain.block()
    assert len(chain.app.race.keeper.challenges.get(ctx(), 0) or b"") == 32


def test_challenge_samples_without_replacement(chain: RaceChain) -> None:
    proofs = trees([50, 3, 4])
    commit_all(chain, proofs)
    chain.until(Phase.REVEAL)
    chain.block()
    big = chain.challenged(NODES[0])
    assert len(big) == PARAMS.sample_size == len(set(big)) and all(0 <= i < 50 for i in big)
    assert chain.challenged(NODES[1]) == [0, 1, 2]


def test_commit_outside_window_is_rejected(chain: RaceChain) -> None:
    tree = trees([5, 1, 1])[0]
    code, log = chain.send_log(NODES[0], MsgCommitProof(0, tree.root, tree.count))
    assert code == Code.INVALID_MESSAGE and "not open" in log


def test_reveal_that_does_not_match_commitment(chain: RaceChain) -> None:
    proofs = trees([5, 5, 5])
    commit_all(chain, proofs)
    chain.until(Phase.REVEAL)
    chain.block()
    leaves = proofs[0].open(chain.challenged(NODES[0]))
    forged = (replace(leaves[0], nonce=leaves[0].nonce + 1), *leaves[1:])
    code, log = chain.send_log(NODES[0], MsgReveal(0, forged))
    assert code == Code.INVALID_MESSAGE and "does not match" in log


def test_nonces_copied_from_another_node_are_rejected(chain: RaceChain) -> None:
    """Node 1 commits node 0's proof tree: its leaves are bound to node 0's key."""
    proofs = trees([5, 5, 5])
    stolen = proofs[0]
    chain.until(Phase.COMMIT)
    assert chain.send(NODES[1], MsgCommitProof(0, stolen.root, stolen.count)) == 0
    chain.until(Phase.REVEAL)
    chain.block()
    code, log = chain.send_log(NODES[1], MsgReveal(0, stolen.open(chain.challenged(NODES[1]))))
    assert code == Code.INVALID_MESSAGE and "does not match" in log


def test_duplicate_nonces_are_rejected(chain: RaceChain) -> None:
    pub = NODES[0].public_key.raw
    nonces = [7, 7, 7, 9]
    leaves = [proof_leaf(pub, 4, i, n) for i, n in enumerate(nonces)]
    root = merkle_root(leaves)
    chain.until(Phase.COMMIT)
    assert chain.send(NODES[0], MsgCommitProof(0, root, 4)) == 0
    chain.until(Phase.REVEAL)
    chain.block()
    indices = [0, 1, 1, 2, 2, 3, 3]
    opened = tuple(Leaf(i, nonces[i], tuple(p)) for i, p in zip(indices, merkle_proofs(leaves, indices), strict=True))
    assert chain.challenged(NODES[0]) == [0, 1, 2, 3]
    code, log = chain.send_log(NODES[0], MsgReveal(0, opened))
    assert code == Code.INVALID_MESSAGE and "not increasing" in log


def test_reveal_of_unchallenged_leaves_is_rejected(chain: RaceChain) -> None:
    proofs = trees([30, 5, 5])
    commit_all(chain, proofs)
    chain.until(Phase.REVEAL)
    chain.block()
    wrong = [i for i in range(30) if i not in chain.challenged(NODES[0])][:4]
    code, log = chain.send_log(NODES[0], MsgReveal(0, proofs[0].open(wrong)))
    assert code == Code.INVALID_MESSAGE and "challenge asks" in log


def test_withheld_reveal_earns_nothing(chain: RaceChain) -> None:
    proofs = trees([5, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs[1:], NODES[1:])
    vote_all(chain, participants=NODES[1:])
    finish_cycle(chain)
    assert (chain.weight(NODES[0]), chain.outcome(NODES[0])) == (0, "no reveal")
    assert [chain.weight(k) for k in NODES[1:]] == [10, 20]


def test_rejected_by_validators(chain: RaceChain) -> None:
    proofs = trees([5, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    vote_all(chain, accept=False)
    finish_cycle(chain)
    assert [chain.outcome(k) for k in NODES] == ["rejected"] * 3
    assert [chain.weight(k) for k in NODES] == [GENESIS_WEIGHT] * 3, "all zero: weights are kept"


def test_only_assigned_validators_vote_once(chain: RaceChain) -> None:
    proofs = trees([5, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    chain.until(Phase.VOTE)
    participant = NODES[0]
    assigned = chain.assigned(participant)
    outsider = (
        next(k for k in NODES if k.public_key.address not in assigned and k != participant)
        if len(assigned) < 2
        else participant
    )
    verdict, validator = vote(participant, True), by_address(assigned[0])
    codes = chain.send_all([(outsider, verdict), (validator, verdict), (validator, verdict)])
    assert codes == [Code.UNAUTHORIZED, 0, Code.ALREADY_DONE], "all three in one block: the vote window is open"


def test_absent_validators_keep_previous_weight(chain: RaceChain) -> None:
    """No quorum: an honest node keeps min(count, previous weight) instead of losing it."""
    proofs = trees([5, 30, 30])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    finish_cycle(chain)
    assert [chain.outcome(k) for k in NODES] == ["no quorum"] * 3
    assert [chain.weight(k) for k in NODES] == [5, GENESIS_WEIGHT, GENESIS_WEIGHT]


def test_nodes_that_skip_the_race_lose_weight(chain: RaceChain) -> None:
    proofs = trees([5, 10, 20])[:2]
    chain.until(Phase.COMMIT)
    pairs = [(node, MsgCommitProof(0, tree.root, tree.count)) for node, tree in zip(NODES, proofs, strict=False)]
    assert chain.send_all(pairs) == [0, 0]
    reveal_all(chain, proofs, NODES[:2])
    vote_all(chain, participants=NODES[:2])
    tally = finish_cycle(chain)
    assert [chain.weight(k) for k in NODES] == [5, 10, 0]
    assert chain.outcome(NODES[2]) == "absent"
    assert {u.pub_key: u.power for u in tally.validator_updates}[CONSENSUS[2].public_key.raw] == 0


def test_weight_cap(tmp_path: Path) -> None:
    c = RaceChain.start(tmp_path, race_genesis(replace(PARAMS, weight_cap=8)))
    chain = RaceChain(c.app, c.driver)
    proofs = trees([5, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    vote_all(chain)
    finish_cycle(chain)
    assert [chain.weight(k) for k in NODES] == [5, 8, 8]
