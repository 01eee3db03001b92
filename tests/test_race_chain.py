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
from racenet.chain.modules.race.module import challenge_seed, race_seed
from racenet.chain.types import FinalizeBlockResult
from racenet.crypto.keys import PrivateKey
from racenet.crypto.merkle import merkle_proofs, merkle_root
from tests.chain import CHAIN_ID, GENESIS_TIME, Chain, balances, key

PARAMS = Params(
    race_blocks=3,
    reveal_blocks=2,
    vote_blocks=2,
    escalation_blocks=2,
    sample_size=4,
    verdict_table=(0, 0, 0, 0, 1),
    validators_per_participant=2,
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


def until_seed(chain: RaceChain, cycle: int = 0) -> None:
    """Run blocks through the cycle's first, whose beacon round makes its race seed."""
    chain.until(Phase.RACE, cycle)
    chain.block()


def commit_all(chain: RaceChain, proofs: list[ProofTree], nodes: list[PrivateKey] = NODES) -> None:
    until_seed(chain)
    pairs = [(node, MsgCommitProof(0, tree.root, tree.count)) for node, tree in zip(nodes, proofs, strict=True)]
    assert chain.send_all(pairs) == [0] * len(pairs)


def reveal_all(chain: RaceChain, proofs: list[ProofTree], nodes: list[PrivateKey] = NODES) -> None:
    chain.until(Phase.REVEAL)
    chain.block()
    pairs = [(node, MsgReveal(0, tree.open(chain.challenged(node)))) for node, tree in zip(nodes, proofs, strict=False)]
    assert chain.send_all(pairs) == [0] * len(pairs)


def vote_all(chain: RaceChain, accept: bool = True, participants: list[PrivateKey] = NODES) -> None:
    """Every committee member votes on each of `participants`: all opened nonces reproduced, or none."""
    chain.until(Phase.VOTE)
    chain.block()
    pairs = [(by_address(v), vote(chain, p, accept)) for p in participants for v in chain.assigned(p)]
    assert chain.send_all(pairs) == [0] * len(pairs)


def vote(chain: RaceChain, participant: PrivateKey | bytes, accept: bool) -> MsgVote:
    """A cycle-0 vote: none of the participant's opened nonces failed, or all of them."""
    address = participant.public_key.address if isinstance(participant, PrivateKey) else participant
    revealed = chain.app.race.keeper.reveals.get(chain.app.read_context(), (0, address))
    opened = len(revealed.nonces) if revealed else PARAMS.sample_size
    return MsgVote(cycle=0, participant=address, failed=() if accept else tuple(range(opened)))


def finish_cycle(chain: RaceChain) -> FinalizeBlockResult:
    return chain.until(Phase.RACE, cycle=1)[-1]


def test_schedule() -> None:
    s = Schedule(PARAMS, start=1)
    assert s.length == 9
    phases = [s.phase(h).value for h in range(1, 11)]
    assert phases == ["race"] * 3 + ["reveal"] * 2 + ["vote"] * 2 + ["escalate"] * 2 + ["race"]
    assert s.cycle(9) == 0 and s.cycle(10) == 1 and s.tally_height(0) == 9 and s.commit_deadline(0) == 3


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


def test_seeds_come_from_beacon_rounds_fixed_at_phase_starts(chain: RaceChain) -> None:
    """The race seed is the hash of the beacon round bound at the cycle's first block, the challenge seed of
    the one bound at the reveal window's first block; neither exists before its phase starts."""
    ctx = chain.app.read_context
    race, beacon = chain.app.race.keeper, chain.app.beacon.keeper
    chain.until(Phase.RACE)
    assert race.seed(ctx(), 0) == b""
    chain.block()
    bound = race.seed_rounds.get(ctx(), 0)
    assert bound and race.seed(ctx(), 0) == race_seed(beacon.output(ctx(), bound), 0)
    assert beacon.rounds.get(ctx(), bound).height == chain.schedule.cycle_start(0)  # type: ignore[union-attr]
    chain.until(Phase.REVEAL)
    assert race.challenge(ctx(), 0) == b""
    chain.block()
    bound = race.challenge_rounds.get(ctx(), 0)
    assert race.challenge(ctx(), 0) == challenge_seed(beacon.output(ctx(), bound), 0)


def test_challenge_samples_without_replacement(chain: RaceChain) -> None:
    proofs = trees([50, 3, 4])
    commit_all(chain, proofs)
    chain.until(Phase.REVEAL)
    chain.block()
    big = chain.challenged(NODES[0])
    assert len(big) == PARAMS.sample_size == len(set(big)) and all(0 <= i < 50 for i in big)
    assert chain.challenged(NODES[1]) == [0, 1, 2]


def test_commitments_count_only_inside_the_race_window(chain: RaceChain) -> None:
    """M5: a commitment before the race seed is out is refused (nothing can have been mined for it), and so is
    one after the race window's last block: the commit deadline is the race end, not a window after it."""
    tree = trees([5, 1, 1])[0]
    code, log = chain.send_log(NODES[0], MsgCommitProof(0, tree.root, tree.count))
    assert code == Code.TOO_EARLY and "not out yet" in log
    chain.until(Phase.REVEAL)
    code, log = chain.send_log(NODES[0], MsgCommitProof(0, tree.root, tree.count))
    assert code == Code.INVALID_MESSAGE and "not open" in log and "reveal" in log
    assert chain.app.race.keeper.commitments.get(chain.app.read_context(), (0, NODES[0].public_key.address)) is None


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
    until_seed(chain)
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
    until_seed(chain)
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


def test_only_committee_members_vote_once_and_counts_must_fit_the_reveal(chain: RaceChain) -> None:
    """In the vote window only the claim's committee votes, once each, with failing positions among the nonces
    the participant opened (here 4)."""
    proofs = trees([5, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    chain.until(Phase.VOTE)
    chain.block()
    participant = NODES[0]
    validator = by_address(chain.assigned(participant)[0])
    verdict = vote(chain, participant, True)
    off_the_end = MsgVote(cycle=0, participant=participant.public_key.address, failed=(4,))
    attempts = [(participant, verdict), (validator, off_the_end), (validator, verdict), (validator, verdict)]
    codes = chain.send_all(attempts)
    assert codes == [Code.UNAUTHORIZED, Code.INVALID_MESSAGE, 0, Code.ALREADY_DONE]


def test_a_claim_nobody_checks_gets_no_weight(chain: RaceChain) -> None:
    """M4: node 0 claims 30 and suppresses every vote on itself (its committee abstains, then the escalation
    window passes unvoted): no quorum now gives weight 0, not the weight it held. The nodes checked by
    their committees keep what they proved."""
    proofs = trees([30, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    vote_all(chain, participants=NODES[1:])
    finish_cycle(chain)
    assert [chain.outcome(k) for k in NODES] == ["no quorum", "accepted", "accepted"]
    assert [chain.weight(k) for k in NODES] == [0, 10, 20]
    outcome = chain.app.race.keeper.outcomes.get(chain.app.read_context(), NODES[0].public_key.address)
    assert outcome is not None and outcome.escalated and len(outcome.committee) == 2


def test_nodes_that_skip_the_race_lose_weight(chain: RaceChain) -> None:
    proofs = trees([5, 10, 20])[:2]
    commit_all(chain, proofs, NODES[:2])
    reveal_all(chain, proofs, NODES[:2])
    vote_all(chain, participants=NODES[:2])
    tally = finish_cycle(chain)
    assert [chain.weight(k) for k in NODES] == [5, 10, 0]
    assert chain.outcome(NODES[2]) == "absent"
    assert {u.pub_key: u.power for u in tally.validator_updates}[CONSENSUS[2].public_key.raw] == 0


def test_weight_cap_is_a_share_of_the_previous_total_weight(tmp_path: Path) -> None:
    """With `weight_cap_percent` 40 and a previous total of 30, no claim gets more than 12."""
    c = RaceChain.start(tmp_path, race_genesis(replace(PARAMS, weight_cap_percent=40)))
    chain = RaceChain(c.app, c.driver)
    proofs = trees([5, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    vote_all(chain)
    finish_cycle(chain)
    assert [chain.weight(k) for k in NODES] == [5, 10, 12]


def test_the_new_weights_take_over_the_beacon_in_the_next_cycle_without_a_gap(chain: RaceChain) -> None:
    """After a tally changes the weights (10/10/10 → 5/10/20), the next cycle's key generation deals shares in
    the new proportion (12 shares by largest remainders: 2, 3, 7; threshold 6, which only the 20 or all three
    reach); the old group signs until the new key is ready, which then signs the very next round, chained on the
    old group's last output: a round in every block."""
    proofs = trees([5, 10, 20])
    commit_all(chain, proofs)
    reveal_all(chain, proofs)
    vote_all(chain)
    finish_cycle(chain)
    chain.until(Phase.RACE, cycle=2)
    chain.block()
    chain.block()
    ctx = chain.app.read_context()
    beacon = chain.app.beacon.keeper
    old, new = beacon.groups.get(ctx, 0), beacon.groups.get(ctx, 1)
    assert old is not None and new is not None
    assert [h.count for h in old.holders] == [4, 4, 4]
    by_address = {h.address: h.count for h in new.holders}
    assert [by_address[k.public_key.address] for k in NODES] == [2, 3, 7] and new.public_key != old.public_key
    assert new.threshold == 6
    rounds = [r for _, r in beacon.rounds.items(ctx)]
    heights = [r.height for r in rounds]
    assert heights == list(range(heights[0], heights[0] + len(heights))), "no block without a round"
    first_new = next(r for r in rounds if r.epoch == 1)
    last_old = next(r for r in rounds if r.round == first_new.round - 1)
    assert last_old.epoch == 0 and first_new.previous == last_old.output
    assert first_new.height == new.active_from + 1, "the new key signs from the block after its dispute window"
