"""race: cycles, commitments, challenged reveals, weighted votes and the weight tally.

Tally rules for a participant that committed (the paper leaves them open; written down here):
- no reveal by the end of the reveal window → weight 0 ("no reveal");
- no other weight holder to validate it (a one-node network) → its count ("unchecked");
- voters' weight below `quorum_percent` of its assigned validators' weight → it keeps
  min(count, previous weight) ("no quorum"): absent validators neither erase an honest
  node's weight nor let a cheater gain;
- otherwise accept-weight > half the voting weight → its count, capped by `weight_cap`
  ("accepted"), else 0 ("rejected"). Abstentions do not count on either side.
A holder that did not commit gets weight 0 ("absent"). If every new weight would be 0, the
weights are kept, so the chain never loses its validator set. After every tally each registered
node's validator power is its weight, scaled down in proportion if the total would exceed
CometBFT's bound (`validator_power`). A cycle's proofs and votes are cleared at its tally; its
race seed one cycle later, as inference routing still uses it.

Until the random beacon exists, the race seed and the challenge seed are hashes of the
previous app hash: a proposer could grind them by choosing transactions (docs/race.md, "Seeds and draws").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import ClassVar, Protocol

from racenet.chain.collections import ADDRESS, PUBKEY, RAW, U64, Item, Map, Record, UintItem, UintMap, pair, triple
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
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.modules.race.selection import assign_validators, challenge_indices, expected_openings
from racenet.chain.modules.race.types import (
    ASSIGNMENTS,
    CHALLENGE,
    CYCLE,
    NODES,
    PARAMS,
    REVEAL,
    Assignments,
    Challenge,
    Commitment,
    CycleInfo,
    MsgCommitProof,
    MsgRegisterNode,
    MsgReveal,
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
    Vote,
    proof_leaf,
)
from racenet.chain.modules.validators.types import MAX_TOTAL_POWER
from racenet.chain.scalars import Amount
from racenet.crypto.address import encode_address
from racenet.crypto.merkle import verify_proof

NAME = "race"


class ValidatorsKeeper(Protocol):
    """What race needs of validators: read and queue validator power."""

    def power(self, ctx: Context, pub_key: bytes) -> int: ...
    def set_power(self, ctx: Context, pub_key: bytes, power: int) -> None: ...


def race_seed(last_app_hash: bytes, cycle: int) -> bytes:
    """The seed every node builds the cycle's model and target vector from."""
    return hashlib.sha256(b"racenet/race-seed" + last_app_hash + cycle.to_bytes(8, "big")).digest()


def challenge_seed(last_app_hash: bytes, cycle: int) -> bytes:
    """The seed that picks the leaves to open, fixed only after every commitment is in."""
    return hashlib.sha256(b"racenet/challenge" + last_app_hash + cycle.to_bytes(8, "big")).digest()


def validator_power(weight: int, total_weight: int) -> int:
    """The CometBFT power of a Race weight: the weight itself, scaled down if the total exceeds the bound."""
    if total_weight <= MAX_TOTAL_POWER:
        return weight
    return weight * MAX_TOTAL_POWER // total_weight


class Keeper(ModuleKeeper):
    """The only reader and writer of race state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    start = UintItem(b"start")
    weights = UintMap(b"weight/", ADDRESS)
    nodes = Map(b"node/", ADDRESS, RAW)
    node_of_key = Map(b"consensus/", PUBKEY, RAW)
    seeds = Map(b"seed/", U64, RAW)
    challenges = Map(b"challenge/", U64, RAW)
    commitments = Map(b"commit/", pair(U64, ADDRESS), Record(Commitment))
    reveals = Map(b"reveal/", pair(U64, ADDRESS), Record(RevealedNonces))
    votes = Map(b"vote/", triple(U64, ADDRESS, ADDRESS), Record(Vote))
    outcomes = Map(b"outcome/", ADDRESS, Record(Outcome))

    def __init__(self, validators: ValidatorsKeeper) -> None:
        self.validators = validators

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
        """The race seed of a cycle (empty before it starts)."""
        return self.seeds.get(ctx, cycle) or b""

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
        commitment, seed = self.commitments.get(ctx, (cycle, address)), self.challenges.get(ctx, cycle)
        if commitment is None or not seed:
            return []
        return challenge_indices(seed, address, commitment.count, self.params.get(ctx).sample_size)

    def assigned(self, ctx: Context, cycle: int, participant: bytes) -> list[bytes]:
        """The validators that must check a participant's reveal."""
        seed = self.challenges.get(ctx, cycle)
        k = self.params.get(ctx).validators_per_participant
        return assign_validators(self.weights.items(ctx), seed, participant, k) if seed else []

    def begin_cycle_phase(self, ctx: Context) -> None:
        """Fix the race seed at a cycle's first block and the challenge seed at its reveal window."""
        schedule = self.schedule(ctx)
        height = ctx.block.height
        cycle = schedule.cycle(height)
        starts = schedule.phase_starts(cycle)
        if height == starts[Phase.RACE]:
            self.seeds.set(ctx, cycle, race_seed(ctx.block.last_app_hash, cycle))
        if height == starts[Phase.REVEAL]:
            self.challenges.set(ctx, cycle, challenge_seed(ctx.block.last_app_hash, cycle))

    def handle_register_node(self, ctx: TxContext, msg: MsgRegisterNode) -> None:
        """race/RegisterNode: bind the signer to its consensus key."""
        self.register(ctx, ctx.tx.signer, msg.consensus_pub_key)

    def handle_commit_proof(self, ctx: TxContext, msg: MsgCommitProof) -> None:
        """race/CommitProof: record a commitment during the commit window."""
        self._require_phase(ctx, msg.cycle, Phase.COMMIT)
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
        """race/Vote: record an assigned validator's verdict during the vote window."""
        self._require_phase(ctx, msg.cycle, Phase.VOTE)
        if not self.reveals.has(ctx, (msg.cycle, msg.participant)):
            raise ChainError(Code.INVALID_MESSAGE, "that participant revealed nothing to vote on")
        if ctx.tx.signer not in self.assigned(ctx, msg.cycle, msg.participant):
            raise ChainError(Code.UNAUTHORIZED, "you are not assigned to validate this participant")
        key = (msg.cycle, msg.participant, ctx.tx.signer)
        if self.votes.has(ctx, key):
            raise ChainError(Code.ALREADY_DONE, "already voted on this participant")
        self.votes.set(ctx, key, Vote(accept=msg.accept, checked=msg.checked, mismatches=msg.mismatches))

    def _require_phase(self, ctx: Context, cycle: int, phase: Phase) -> None:
        schedule = self.schedule(ctx)
        now_cycle, now_phase = schedule.cycle(ctx.block.height), schedule.phase(ctx.block.height)
        if (cycle, phase) != (now_cycle, now_phase):
            raise ChainError(
                Code.INVALID_MESSAGE,
                f"{phase.value} for cycle {cycle} is not open: height {ctx.block.height} is cycle {now_cycle} "
                f"{now_phase.value}",
            )

    def tally(self, ctx: Context) -> None:
        """At a cycle's last block: decide every proof, set next cycle's weights and powers, clear the cycle."""
        schedule = self.schedule(ctx)
        cycle = schedule.cycle(ctx.block.height)
        if ctx.block.height != schedule.tally_height(cycle):
            return
        outcomes: dict[bytes, Outcome] = {}
        for (_, address), commitment in self.commitments.items(ctx, (cycle,)):
            with isolated(ctx, NAME, f"tally of {encode_address(address)}") as item:
                outcomes[address] = self._decide(item, cycle, address, commitment)
        for address, _ in self.weights.items(ctx):
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

    def _decide(self, ctx: Context, cycle: int, participant: bytes, commitment: Commitment) -> Outcome:
        params = self.params.get(ctx)
        count = min(commitment.count, params.weight_cap) if params.weight_cap else commitment.count

        def outcome(weight: int, status: OutcomeStatus) -> Outcome:
            return Outcome(cycle=cycle, claimed=commitment.count, weight=Amount(weight), status=status)

        if not self.reveals.has(ctx, (cycle, participant)):
            return outcome(0, OutcomeStatus.NO_REVEAL)
        assigned = self.assigned(ctx, cycle, participant)
        if not assigned:
            return outcome(count, OutcomeStatus.UNCHECKED)
        weight = {a: int(w) for a, w in self.weights.items(ctx)}
        assigned_weight = sum(weight[a] for a in assigned)
        votes = [(v, weight.get(a, 0)) for (_, _, a), v in self.votes.items(ctx, (cycle, participant))]
        voted = sum(w for _, w in votes)
        if voted * 100 < params.quorum_percent * assigned_weight:
            return outcome(min(count, weight.get(participant, 0)), OutcomeStatus.NO_QUORUM)
        accepted = sum(w for v, w in votes if v.accept)
        if accepted * 2 > voted:
            return outcome(count, OutcomeStatus.ACCEPTED)
        return outcome(0, OutcomeStatus.REJECTED)

    def _sync_powers(self, ctx: Context) -> None:
        """Make every registered node's validator power its (scaled) weight."""
        total = sum(int(w) for _, w in self.weights.items(ctx))
        for address, key in self.nodes.items(ctx):
            self.validators.set_power(ctx, key, validator_power(self.weights.get(ctx, address), total))

    def _clear_cycle(self, ctx: Context, cycle: int) -> None:
        """Drop a tallied cycle's proofs and votes, and the race seed of the cycle before."""
        for collection in (self.challenges, self.commitments, self.reveals, self.votes):
            collection.clear(ctx, (cycle,))
        if cycle > 0:
            self.seeds.clear(ctx, (cycle - 1,))

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
            race_seed=self.seed(ctx, cycle),
            challenge_seed=self.challenges.get(ctx, cycle) or b"",
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
        """The participants a validator must check this cycle."""
        cycle = self.schedule(ctx).cycle(ctx.block.height)
        committed = [a for _, a in self.commitments.keys(ctx, (cycle,))]
        participants = [a for a in committed if address in self.assigned(ctx, cycle, a)]
        return Assignments(cycle, tuple(participants))


class RaceModule(Module[Keeper, RaceGenesis]):
    """Module wiring: messages, hooks, genesis, queries and the power invariant."""

    name = NAME
    genesis_type = RaceGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgRegisterNode: Keeper.handle_register_node,
        MsgCommitProof: Keeper.handle_commit_proof,
        MsgReveal: Keeper.handle_reveal,
        MsgVote: Keeper.handle_vote,
    }
    queries: ClassVar[QueryTable] = {
        PARAMS: Keeper.query_params,
        CYCLE: Keeper.query_cycle,
        NODES: Keeper.query_nodes,
        CHALLENGE: Keeper.query_challenge,
        REVEAL: Keeper.query_reveal,
        ASSIGNMENTS: Keeper.query_assignments,
    }

    def init_genesis(self, ctx: Context, state: RaceGenesis) -> None:
        """Params, the first cycle's start, and genesis nodes with their weights."""
        self.keeper.params.set(ctx, state.params)
        self.keeper.start.set(ctx, state.start or ctx.block.height + 1)
        for node in state.nodes:
            self.keeper.register(ctx, node.address, node.consensus_pub_key)
            self.keeper.weights.set(ctx, node.address, node.weight)

    def export_genesis(self, ctx: Context) -> RaceGenesis:
        """Params, start height and registered nodes with their weights."""
        k = self.keeper
        nodes = tuple(RaceNode(a, key, k.weights.get(ctx, a)) for a, key in k.nodes.items(ctx))
        return RaceGenesis(params=k.params.get(ctx), start=k.schedule(ctx).start, nodes=nodes)

    def begin_block(self, ctx: Context) -> None:
        """Fix seeds at phase boundaries."""
        self.keeper.begin_cycle_phase(ctx)

    def end_block(self, ctx: Context) -> None:
        """Tally at the cycle's last block (validator power flows through the validators module)."""
        self.keeper.tally(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """powers: after each tally, validator power equals Race weight."""
        return {"powers": self.keeper.check_powers}
