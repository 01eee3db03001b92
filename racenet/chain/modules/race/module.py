"""race: cycles, commitments, challenged reveals, majority-verified votes and the weight tally.

A cycle (schedule.py): mining in the race window, whose commitments must be in by its last block;
reveals of the challenged leaves; the committee's votes; escalated votes by every weight holder.
A vote states which opened nonces failed to reproduce, and the chain draws the verdict from those
counts with `Params.verdict`. Who settles a claim is `majority.py`'s rule (whitepaper §6). Tally:
- no reveal by the end of the reveal window → weight 0 ("no reveal");
- no other weight holder to validate it (a one-node network) → its count ("unchecked");
- settled by its committee, or after escalation by more than half of all weight →
  its count, capped at `weight_cap_percent` of the previous total weight ("accepted"), or 0
  ("rejected"); escalated voters on the losing side are recorded as misvotes;
- not settled → 0 ("no quorum"): a claim nobody checked never gets or keeps weight.
A holder that did not commit gets weight 0 ("absent"). If every new weight would be 0, the
weights are kept, so the chain never loses its validator set. After every tally each registered
node's validator power is its weight, scaled down in proportion if the total would exceed
CometBFT's bound (`validator_power`). A cycle's proofs, committees and votes are cleared at its
tally; misvotes are kept one more cycle, for the rewards that read them.

Seeds come from the random beacon: at the cycle's first block S the race seed is bound to the first
beacon round nobody could sign before block S-1 was fixed (`round_after(S-1)`), and at the reveal
window's first block R the challenge seed to the first round signed after the last commit block R-1.
Each seed exists once its round is recorded, normally in that same block; until then miners and
revealers wait (docs/beacon.md). Committees are drawn at the vote window's first block, from the
challenge seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import ClassVar, Protocol

from racenet.chain.authority import require_authority
from racenet.chain.collections import (
    ADDRESS,
    PUBKEY,
    RAW,
    U64,
    Item,
    KeySet,
    Map,
    Record,
    UintItem,
    UintMap,
    pair,
    triple,
)
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import (
    Context,
    HandlerTable,
    Invariant,
    InvariantBroken,
    Module,
    ModuleKeeper,
    QueryTable,
    TxContext,
    isolated,
)
from racenet.chain.modules.race.majority import Ballot, committee_verdict, losing_voters, majority_verdict
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.modules.race.selection import WeightedPool, assign_validators, challenge_indices, expected_openings
from racenet.chain.modules.race.types import (
    ASSIGNMENTS,
    CHALLENGE,
    CLAIMS,
    CYCLE,
    MISVOTES,
    NODES,
    PARAMS,
    REVEAL,
    Assignments,
    Challenge,
    ClaimInfo,
    Claims,
    Commitment,
    CycleInfo,
    Misvote,
    Misvotes,
    MsgCommitProof,
    MsgRegisterNode,
    MsgReveal,
    MsgUpdateParams,
    MsgVote,
    NodeInfo,
    Nodes,
    Outcome,
    OutcomeStatus,
    Params,
    Phase,
    RaceGenesis,
    RaceNode,
    RevealedNonces,
    RevealInfo,
    ScheduledParams,
    Vote,
    VoteInfo,
    possession_message,
    proof_leaf,
)
from racenet.chain.modules.validators.types import MAX_TOTAL_POWER
from racenet.chain.scalars import Amount
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PublicKey
from racenet.crypto.merkle import verify_proof

NAME = "race"


class ValidatorsKeeper(Protocol):
    """What race needs of validators: read and queue validator power."""

    def power(self, ctx: Context, pub_key: bytes) -> int: ...
    def set_power(self, ctx: Context, pub_key: bytes, power: int) -> None: ...


class BeaconSource(Protocol):
    """What race needs of the beacon: a round nobody knows yet, and round outputs once recorded."""

    def round_after(self, ctx: Context, height: int) -> int: ...
    def output(self, ctx: Context, round_: int) -> bytes: ...


def race_seed(beacon_output: bytes, cycle: int) -> bytes:
    """The seed every node builds the cycle's model and targets from."""
    return hashlib.sha256(b"racenet/race-seed" + beacon_output + cycle.to_bytes(8, "big")).digest()


def challenge_seed(beacon_output: bytes, cycle: int) -> bytes:
    """The seed that picks the leaves to open and the validators, drawn only after every commitment is in."""
    return hashlib.sha256(b"racenet/challenge" + beacon_output + cycle.to_bytes(8, "big")).digest()


def validator_power(weight: int, total_weight: int) -> int:
    """The CometBFT power of a Race weight: the weight itself, scaled down if the total exceeds the bound."""
    if total_weight <= MAX_TOTAL_POWER:
        return weight
    return weight * MAX_TOTAL_POWER // total_weight


class Keeper(ModuleKeeper):
    """The only reader and writer of race state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    next_params = Map(b"next_params/", U64, Record(Params))  # by the cycle whose first block applies them
    start = UintItem(b"start")
    weights = UintMap(b"weight/", ADDRESS)
    nodes = Map(b"node/", ADDRESS, RAW)
    node_of_key = Map(b"consensus/", PUBKEY, RAW)
    seed_rounds = UintMap(b"seed_round/", U64)
    challenge_rounds = UintMap(b"challenge_round/", U64)
    commitments = Map(b"commit/", pair(U64, ADDRESS), Record(Commitment))
    reveals = Map(b"reveal/", pair(U64, ADDRESS), Record(RevealedNonces))
    votes = Map(b"vote/", triple(U64, ADDRESS, ADDRESS), Record(Vote))
    committees = KeySet(b"committee/", triple(U64, ADDRESS, ADDRESS))
    duties = KeySet(b"duty/", triple(U64, ADDRESS, ADDRESS))
    escalated = KeySet(b"escalated/", pair(U64, ADDRESS))
    misvotes = UintMap(b"misvote/", pair(U64, ADDRESS))
    outcomes = Map(b"outcome/", ADDRESS, Record(Outcome))

    def __init__(self, validators: ValidatorsKeeper) -> None:
        self.validators = validators
        self.beacon: BeaconSource | None = None

    def use_beacon(self, beacon: BeaconSource) -> None:
        """Draw seeds from `beacon` (wired by the App: the beacon in turn reads race weights)."""
        self.beacon = beacon

    def _round_output(self, ctx: Context, round_: int) -> bytes:
        if not round_ or self.beacon is None:
            return b""
        return self.beacon.output(ctx, round_)

    def schedule(self, ctx: Context) -> Schedule:
        """The cycle schedule."""
        return Schedule(self.params.get(ctx), self.start.get(ctx) or 1)

    def weight(self, ctx: Context, address: bytes) -> int:
        """An account's voting weight this cycle."""
        return self.weights.get(ctx, address)

    def consensus_key(self, ctx: Context, address: bytes) -> bytes:
        """The consensus key a node registered (empty if none)."""
        return self.nodes.get(ctx, address) or b""

    def seed(self, ctx: Context, cycle: int) -> bytes:
        """The race seed of a cycle (empty until its beacon round is recorded)."""
        output = self._round_output(ctx, self.seed_rounds.get(ctx, cycle))
        return race_seed(output, cycle) if output else b""

    def challenge(self, ctx: Context, cycle: int) -> bytes:
        """The challenge seed of a cycle (empty until its beacon round is recorded)."""
        output = self._round_output(ctx, self.challenge_rounds.get(ctx, cycle))
        return challenge_seed(output, cycle) if output else b""

    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]:
        """Every weight holder with its weight, by address."""
        return [(a, int(w)) for a, w in self.weights.items(ctx)]

    def node_keys(self, ctx: Context) -> list[bytes]:
        """Every registered consensus key."""
        return [key for _, key in self.nodes.items(ctx)]

    def node_of(self, ctx: Context, consensus_key: bytes) -> bytes:
        """The account that registered a consensus key (empty if none)."""
        return self.node_of_key.get(ctx, consensus_key) or b""

    def register(self, ctx: Context, address: bytes, consensus_key: bytes) -> None:
        """Bind an account to a consensus key, one to one."""
        if self.nodes.has(ctx, address):
            raise ChainError(Code.INVALID_MESSAGE, "this account already registered a node")
        if self.node_of_key.has(ctx, consensus_key):
            raise ChainError(Code.INVALID_MESSAGE, "this consensus key belongs to another node")
        self.nodes.set(ctx, address, consensus_key)
        self.node_of_key.set(ctx, consensus_key, address)

    def challenged(self, ctx: Context, cycle: int, address: bytes) -> list[int]:
        """The leaf indices a participant must open (empty before the challenge)."""
        commitment, seed = self.commitments.get(ctx, (cycle, address)), self.challenge(ctx, cycle)
        if commitment is None or not seed:
            return []
        return challenge_indices(seed, address, commitment.count, self.params.get(ctx).sample_size)

    def assigned(self, ctx: Context, cycle: int, participant: bytes) -> list[bytes]:
        """A participant's committee: the validators drawn to check its reveal (empty before the vote window)."""
        return [v for _, _, v in self.committees.keys(ctx, (cycle, participant))]

    def begin_cycle_phase(self, ctx: Context) -> None:
        """At phase boundaries: bind the race and challenge seeds, draw committees, escalate unsettled claims."""
        schedule = self.schedule(ctx)
        height = ctx.block.height
        cycle = schedule.cycle(height)
        starts = schedule.phase_starts(cycle)
        if height == starts[Phase.RACE]:
            self.apply_next_params(ctx, cycle)
        if self.beacon is not None and height == starts[Phase.RACE]:
            self.seed_rounds.set(ctx, cycle, self.beacon.round_after(ctx, height - 1))
        if self.beacon is not None and height == starts[Phase.REVEAL]:
            self.challenge_rounds.set(ctx, cycle, self.beacon.round_after(ctx, height - 1))
        if height == starts[Phase.VOTE]:
            self.draw_committees(ctx, cycle)
        if height == starts[Phase.ESCALATE]:
            self.escalate(ctx, cycle)

    def apply_next_params(self, ctx: Context, cycle: int) -> None:
        """At a cycle's first block, the params governance set for it (if any) replace the current ones."""
        params = self.next_params.get(ctx, cycle)
        if params is None:
            return
        self.params.set(ctx, params)
        self.next_params.remove(ctx, cycle)
        ctx.emit("params_updated", module=NAME, cycle=str(cycle))

    def draw_committees(self, ctx: Context, cycle: int) -> None:
        """Draw each revealed claim's committee by weight from the challenge seed (once, for the whole cycle)."""
        seed = self.challenge(ctx, cycle)
        if not seed:
            return
        pool = WeightedPool(self.all_weights(ctx))
        k = self.params.get(ctx).validators_per_participant
        for _, participant in self.reveals.keys(ctx, (cycle,)):
            for validator in assign_validators(pool, seed, participant, k):
                self.committees.add(ctx, (cycle, participant, validator))
                self.duties.add(ctx, (cycle, validator, participant))

    def escalate(self, ctx: Context, cycle: int) -> None:
        """Open every revealed claim its committee did not settle to the votes of every weight holder."""
        weights = dict(self.all_weights(ctx))
        for _, participant in self.reveals.keys(ctx, (cycle,)):
            if self._committee_verdict(ctx, cycle, participant, weights) is None:
                self.escalated.add(ctx, (cycle, participant))
                ctx.emit("race_escalated", cycle=str(cycle), participant=encode_address(participant))

    def _ballots(self, ctx: Context, cycle: int, participant: bytes, weights: Mapping[bytes, int]) -> list[Ballot]:
        return [
            Ballot(voter, weights.get(voter, 0), vote.accept)
            for (_, _, voter), vote in self.votes.items(ctx, (cycle, participant))
        ]

    def _committee_verdict(
        self, ctx: Context, cycle: int, participant: bytes, weights: Mapping[bytes, int]
    ) -> bool | None:
        committee_weight = sum(weights.get(v, 0) for v in self.assigned(ctx, cycle, participant))
        return committee_verdict(self._ballots(ctx, cycle, participant, weights), committee_weight)

    def verdict(self, ctx: Context, cycle: int, participant: bytes, weights: Mapping[bytes, int]) -> bool | None:
        """A revealed claim's verdict as the votes stand: its committee's, or once escalated the weight majority's."""
        if self.escalated.has(ctx, (cycle, participant)):
            ballots = self._ballots(ctx, cycle, participant, weights)
            return majority_verdict(ballots, weights.get(participant, 0), sum(weights.values()))
        return self._committee_verdict(ctx, cycle, participant, weights)

    def handle_register_node(self, ctx: TxContext, msg: MsgRegisterNode) -> None:
        """race/RegisterNode: bind the signer to a consensus key whose holder signed the binding."""
        message = possession_message(ctx.block.chain_id, ctx.tx.signer)
        if not PublicKey(msg.consensus_pub_key).verify(message, msg.proof):
            raise ChainError(Code.UNAUTHORIZED, "the proof is not the consensus key's signature of this account")
        self.register(ctx, ctx.tx.signer, msg.consensus_pub_key)

    def handle_commit_proof(self, ctx: TxContext, msg: MsgCommitProof) -> None:
        """race/CommitProof: record a commitment in the race window, once its seed is out."""
        self._require_phase(ctx, msg.cycle, Phase.RACE)
        if not self.seed(ctx, msg.cycle):
            raise ChainError(Code.TOO_EARLY, f"the race seed of cycle {msg.cycle} is not out yet")
        if not self.consensus_key(ctx, ctx.tx.signer):
            raise ChainError(Code.UNAUTHORIZED, "register a node (race/RegisterNode) before committing")
        if self.commitments.has(ctx, (msg.cycle, ctx.tx.signer)):
            raise ChainError(Code.ALREADY_DONE, f"already committed in cycle {msg.cycle}")
        self.commitments.set(ctx, (msg.cycle, ctx.tx.signer), Commitment(msg.root, Amount(msg.count)))

    def handle_reveal(self, ctx: TxContext, msg: MsgReveal) -> None:
        """race/Reveal: check an opening against the commitment and the challenge, then record its nonces."""
        self._require_phase(ctx, msg.cycle, Phase.REVEAL)
        signer = ctx.tx.signer
        commitment = self.commitments.get(ctx, (msg.cycle, signer))
        if commitment is None:
            raise ChainError(Code.INVALID_MESSAGE, f"no commitment in cycle {msg.cycle}")
        if self.reveals.has(ctx, (msg.cycle, signer)):
            raise ChainError(Code.ALREADY_DONE, f"already revealed in cycle {msg.cycle}")
        indices = self.challenged(ctx, msg.cycle, signer)
        expected = expected_openings(indices, commitment.count)
        if [leaf.index for leaf in msg.leaves] != expected:
            raise ChainError(Code.INVALID_MESSAGE, f"the challenge asks for leaves {expected}")
        nonces: dict[int, int] = {}
        for leaf in msg.leaves:
            data = proof_leaf(ctx.tx.pub_key, commitment.count, leaf.index, leaf.nonce)
            if not verify_proof(commitment.root, data, leaf.index, commitment.count, leaf.path):
                raise ChainError(Code.INVALID_MESSAGE, f"leaf {leaf.index} does not match the commitment")
            nonces[leaf.index] = leaf.nonce
        for i in indices:
            if i + 1 in nonces and not nonces[i] < nonces[i + 1]:
                raise ChainError(Code.INVALID_MESSAGE, f"nonces at leaves {i} and {i + 1} are not increasing")
        record = RevealedNonces(ctx.tx.pub_key, tuple(nonces[i] for i in indices))
        self.reveals.set(ctx, (msg.cycle, signer), record)

    def handle_vote(self, ctx: TxContext, msg: MsgVote) -> None:
        """race/Vote: record a committee member's (or, once escalated, any weight holder's) check of a reveal."""
        self._require_phase(ctx, msg.cycle, Phase.VOTE, Phase.ESCALATE)
        revealed = self.reveals.get(ctx, (msg.cycle, msg.participant))
        if revealed is None:
            raise ChainError(Code.INVALID_MESSAGE, "that participant revealed nothing to vote on")
        if not self._may_vote(ctx, msg.cycle, msg.participant, ctx.tx.signer):
            raise ChainError(Code.UNAUTHORIZED, "you are not asked to validate this participant now")
        key = (msg.cycle, msg.participant, ctx.tx.signer)
        if self.votes.has(ctx, key):
            raise ChainError(Code.ALREADY_DONE, "already voted on this participant")
        checked = len(revealed.nonces)
        if msg.failed and msg.failed[-1] >= checked:
            raise ChainError(Code.INVALID_MESSAGE, f"the participant opened {checked} nonces")
        accept = self.params.get(ctx).verdict(checked, len(msg.failed))
        self.votes.set(ctx, key, Vote(failed=msg.failed, accept=accept))

    def _may_vote(self, ctx: Context, cycle: int, participant: bytes, voter: bytes) -> bool:
        """In the vote window the committee votes; in the escalation window every other weight holder may."""
        if self.schedule(ctx).phase(ctx.block.height) == Phase.VOTE:
            return self.committees.has(ctx, (cycle, participant, voter))
        escalated = self.escalated.has(ctx, (cycle, participant))
        return escalated and voter != participant and self.weights.get(ctx, voter) > 0

    def _require_phase(self, ctx: Context, cycle: int, *phases: Phase) -> None:
        schedule = self.schedule(ctx)
        now_cycle, now_phase = schedule.cycle(ctx.block.height), schedule.phase(ctx.block.height)
        if now_cycle != cycle or now_phase not in phases:
            raise ChainError(
                Code.INVALID_MESSAGE,
                f"{' or '.join(p.value for p in phases)} for cycle {cycle} is not open: height {ctx.block.height} "
                f"is cycle {now_cycle} {now_phase.value}",
            )

    def tally(self, ctx: Context) -> None:
        """At a cycle's last block: decide every claim, set next cycle's weights and powers, clear the cycle."""
        schedule = self.schedule(ctx)
        cycle = schedule.cycle(ctx.block.height)
        if ctx.block.height != schedule.tally_height(cycle):
            return
        weights = dict(self.all_weights(ctx))
        outcomes: dict[bytes, Outcome] = {}
        for (_, address), commitment in self.commitments.items(ctx, (cycle,)):
            with isolated(ctx, NAME, f"tally of {encode_address(address)}") as item:
                outcomes[address] = self._decide(item, cycle, address, commitment, weights)
        for address in weights:
            outcomes.setdefault(
                address, Outcome(cycle=cycle, claimed=Amount(0), weight=Amount(0), status=OutcomeStatus.ABSENT)
            )
        if sum(int(o.weight) for o in outcomes.values()) == 0:
            ctx.emit("race_tally", cycle=str(cycle), result="kept: no weight was earned")
        else:
            for address, outcome in sorted(outcomes.items()):
                self.weights.set(ctx, address, outcome.weight)
        self._sync_powers(ctx)
        for address, outcome in outcomes.items():
            self.outcomes.set(ctx, address, outcome)
        self._clear_cycle(ctx, cycle)

    def _decide(
        self, ctx: Context, cycle: int, participant: bytes, commitment: Commitment, weights: Mapping[bytes, int]
    ) -> Outcome:
        params = self.params.get(ctx)
        total = sum(weights.values())
        cap = params.weight_cap_percent * total // 100 if params.weight_cap_percent and total else commitment.count
        committee = tuple(self.assigned(ctx, cycle, participant))
        escalated = self.escalated.has(ctx, (cycle, participant))

        def outcome(weight: int, status: OutcomeStatus) -> Outcome:
            return Outcome(
                cycle=cycle,
                claimed=commitment.count,
                weight=Amount(min(weight, cap)),
                status=status,
                committee=committee,
                escalated=escalated,
            )

        if not self.reveals.has(ctx, (cycle, participant)):
            return outcome(0, OutcomeStatus.NO_REVEAL)
        if total - weights.get(participant, 0) == 0:
            return outcome(commitment.count, OutcomeStatus.UNCHECKED)
        verdict = self.verdict(ctx, cycle, participant, weights)
        if verdict is None:
            return outcome(0, OutcomeStatus.NO_QUORUM)
        if escalated:
            for voter in losing_voters(self._ballots(ctx, cycle, participant, weights), verdict):
                self.misvotes.set(ctx, (cycle, voter), self.misvotes.get(ctx, (cycle, voter)) + 1)
        if verdict:
            return outcome(commitment.count, OutcomeStatus.ACCEPTED)
        return outcome(0, OutcomeStatus.REJECTED)

    def _sync_powers(self, ctx: Context) -> None:
        """Make every registered node's validator power its (scaled) weight."""
        total = sum(int(w) for _, w in self.weights.items(ctx))
        for address, key in self.nodes.items(ctx):
            self.validators.set_power(ctx, key, validator_power(self.weights.get(ctx, address), total))

    def _clear_cycle(self, ctx: Context, cycle: int) -> None:
        """Drop a tallied cycle's proofs, committees and votes, and the race seed and misvotes of the cycle before."""
        for collection in (self.commitments, self.reveals, self.votes, self.committees, self.duties, self.escalated):
            collection.clear(ctx, (cycle,))
        self.challenge_rounds.set(ctx, cycle, 0)
        if cycle > 0:
            self.seed_rounds.set(ctx, cycle - 1, 0)
            self.misvotes.clear(ctx, (cycle - 1,))

    def misvoters(self, ctx: Context, cycle: int) -> list[tuple[bytes, int]]:
        """Voters on the losing side of escalated decisions of `cycle`, with how many (kept one cycle)."""
        return [(voter, int(n)) for (_, voter), n in self.misvotes.items(ctx, (cycle,))]

    def check_powers(self, ctx: Context) -> None:
        """After a tally, every registered node's validator power is its (scaled) weight."""
        schedule = self.schedule(ctx)
        if ctx.block.height != schedule.tally_height(schedule.cycle(ctx.block.height)):
            return
        total = sum(int(w) for _, w in self.weights.items(ctx))
        for address, key in self.nodes.items(ctx):
            want, have = validator_power(self.weights.get(ctx, address), total), self.validators.power(ctx, key)
            if want != have:
                raise InvariantBroken(f"{encode_address(address)}: weight gives power {want}, validator has {have}")

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """race/UpdateParams: governance sets the params of the next cycle (a cycle never changes its rules midway);
        the phase lengths cannot change, since every cycle number on chain derives from them."""
        require_authority(ctx, "change race params")
        if msg.params.cycle_shape() != self.params.get(ctx).cycle_shape():
            raise ChainError(Code.INVALID_MESSAGE, "the Race phase lengths are fixed at genesis")
        cycle = self.schedule(ctx).cycle(ctx.block.height) + 1
        self.next_params.set(ctx, cycle, msg.params)
        ctx.emit("params_scheduled", module=NAME, cycle=str(cycle))

    def query_params(self, ctx: Context, _: None) -> Params:
        """The race parameters."""
        return self.params.get(ctx)

    def query_cycle(self, ctx: Context, _: None) -> CycleInfo:
        """The current cycle, phase, phase heights and seeds."""
        schedule, params = self.schedule(ctx), self.params.get(ctx)
        cycle = schedule.cycle(ctx.block.height)
        return CycleInfo(
            height=ctx.block.height,
            cycle=cycle,
            phase=schedule.phase(ctx.block.height),
            phase_starts=schedule.phase_starts(cycle),
            tally_height=schedule.tally_height(cycle),
            race_round=self.seed_rounds.get(ctx, cycle),
            race_seed=self.seed(ctx, cycle),
            challenge_round=self.challenge_rounds.get(ctx, cycle),
            challenge_seed=self.challenge(ctx, cycle),
            preset=params.preset,
        )

    def query_nodes(self, ctx: Context, _: None) -> Nodes:
        """Every registered node with its weight, power, commitment and last outcome."""
        cycle = self.schedule(ctx).cycle(ctx.block.height)
        nodes = []
        for address, key in self.nodes.items(ctx):
            commitment = self.commitments.get(ctx, (cycle, address))
            node = NodeInfo(
                address=address,
                consensus_pub_key=key,
                weight=self.weights.get(ctx, address),
                power=self.validators.power(ctx, key),
                committed=commitment.count if commitment else None,
                last_outcome=self.outcomes.get(ctx, address),
            )
            nodes.append(node)
        return Nodes(tuple(nodes))

    def query_challenge(self, ctx: Context, address: bytes) -> Challenge:
        """The leaves a participant must open this cycle."""
        cycle = self.schedule(ctx).cycle(ctx.block.height)
        commitment = self.commitments.get(ctx, (cycle, address))
        indices = tuple(self.challenged(ctx, cycle, address))
        return Challenge(cycle, indices, commitment.count if commitment else 0)

    def query_reveal(self, ctx: Context, address: bytes) -> RevealInfo | None:
        """The nonces a participant opened this cycle (None if it has not revealed)."""
        cycle = self.schedule(ctx).cycle(ctx.block.height)
        revealed = self.reveals.get(ctx, (cycle, address))
        return None if revealed is None else RevealInfo(cycle, revealed.pub_key, revealed.nonces)

    def query_assignments(self, ctx: Context, address: bytes) -> Assignments:
        """The claims a validator has yet to vote on now: its committees, and once escalated every other claim."""
        schedule = self.schedule(ctx)
        cycle, phase = schedule.cycle(ctx.block.height), schedule.phase(ctx.block.height)
        if phase == Phase.ESCALATE:
            holder = self.weights.get(ctx, address) > 0
            participants = [p for _, p in self.escalated.keys(ctx, (cycle,)) if holder and p != address]
        else:
            participants = [p for _, _, p in self.duties.keys(ctx, (cycle, address))]
        return Assignments(cycle, tuple(p for p in participants if not self.votes.has(ctx, (cycle, p, address))))

    def query_claims(self, ctx: Context, _: None) -> Claims:
        """Every claim of the current cycle with its committee, votes, escalation and standing."""
        cycle = self.schedule(ctx).cycle(ctx.block.height)
        weights = dict(self.all_weights(ctx))
        claims = []
        for (_cycle, participant), commitment in self.commitments.items(ctx, (cycle,)):
            revealed = self.reveals.has(ctx, (cycle, participant))
            votes = tuple(
                VoteInfo(voter=voter, weight=weights.get(voter, 0), failed=len(v.failed), accept=v.accept)
                for (_, _, voter), v in self.votes.items(ctx, (cycle, participant))
            )
            verdict = self.verdict(ctx, cycle, participant, weights) if revealed else None
            claim = ClaimInfo(
                participant=participant,
                count=int(commitment.count),
                revealed=revealed,
                committee=tuple(self.assigned(ctx, cycle, participant)),
                votes=votes,
                escalated=self.escalated.has(ctx, (cycle, participant)),
                standing="undecided" if verdict is None else ("accepted" if verdict else "rejected"),
            )
            claims.append(claim)
        return Claims(cycle, tuple(claims))

    def query_misvotes(self, ctx: Context, _: None) -> Misvotes:
        """Voters on the losing side of escalated decisions, for the cycles still kept."""
        return Misvotes(tuple(Misvote(cycle=c, voter=v, count=int(n)) for (c, v), n in self.misvotes.items(ctx)))


class RaceModule(Module[Keeper, RaceGenesis]):
    """Module wiring: messages, hooks, genesis, queries and the power invariant."""

    name = NAME
    genesis_type = RaceGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgRegisterNode: Keeper.handle_register_node,
        MsgCommitProof: Keeper.handle_commit_proof,
        MsgReveal: Keeper.handle_reveal,
        MsgVote: Keeper.handle_vote,
        MsgUpdateParams: Keeper.handle_update_params,
    }
    queries: ClassVar[QueryTable] = {
        PARAMS: Keeper.query_params,
        CYCLE: Keeper.query_cycle,
        NODES: Keeper.query_nodes,
        CHALLENGE: Keeper.query_challenge,
        REVEAL: Keeper.query_reveal,
        ASSIGNMENTS: Keeper.query_assignments,
        CLAIMS: Keeper.query_claims,
        MISVOTES: Keeper.query_misvotes,
    }

    def init_genesis(self, ctx: Context, state: RaceGenesis) -> None:
        """Params, the first cycle's start, genesis nodes with their weights and params scheduled by governance."""
        self.keeper.params.set(ctx, state.params)
        self.keeper.start.set(ctx, state.start or ctx.block.height + 1)
        for node in state.nodes:
            self.keeper.register(ctx, node.address, node.consensus_pub_key)
            self.keeper.weights.set(ctx, node.address, node.weight)
        for scheduled in state.next_params:
            self.keeper.next_params.set(ctx, scheduled.cycle, scheduled.params)

    def export_genesis(self, ctx: Context) -> RaceGenesis:
        """Params, start height, registered nodes with their weights and params scheduled by governance."""
        k = self.keeper
        nodes = tuple(RaceNode(a, key, k.weights.get(ctx, a)) for a, key in k.nodes.items(ctx))
        scheduled = tuple(ScheduledParams(c, p) for c, p in k.next_params.items(ctx))
        return RaceGenesis(params=k.params.get(ctx), start=k.schedule(ctx).start, nodes=nodes, next_params=scheduled)

    def begin_block(self, ctx: Context) -> None:
        """Fix seeds at phase boundaries."""
        self.keeper.begin_cycle_phase(ctx)

    def end_block(self, ctx: Context) -> None:
        """Tally at the cycle's last block (validator power flows through the validators module)."""
        self.keeper.tally(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """powers: after each tally, validator power equals Race weight."""
        return {"powers": self.keeper.check_powers}
