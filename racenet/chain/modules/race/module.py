"""race: cycles, commitments, challenged reveals, weighted votes and the weight tally.

State keys under `race/`:
`params`, `start` (first cycle's height), `weight/<addr>` (voting weight this cycle),
`node/<addr>` → consensus key and `consensus/<key>` → addr (registration),
`seed/<cycle>`, `challenge/<cycle>`, `commit/<cycle>/<addr>`, `reveal/<cycle>/<addr>`,
`vote/<cycle>/<participant>/<validator>` (cleared at the tally; a seed one cycle later, as
inference routing still uses it), `outcome/<addr>` (last tally).

Tally rules for a participant that committed (the paper leaves them open; written down here):
- no reveal by the end of the reveal window → weight 0 ("no reveal");
- no other weight holder to validate it (a one-node network) → its count ("unchecked");
- voters' weight below `quorum_percent` of its assigned validators' weight → it keeps
  min(count, previous weight) ("no quorum"): absent validators neither erase an honest
  node's weight nor let a cheater gain;
- otherwise accept-weight > half the voting weight → its count, capped by `weight_cap`
  ("accepted"), else 0 ("rejected"). Abstentions do not count on either side.
A holder that did not commit gets weight 0 ("absent"). If every new weight would be 0, the
weights are kept, so the chain never loses its validator set.

Until the random beacon exists, the race seed and the challenge seed are hashes of the
previous app hash: a proposer could grind them by choosing transactions (DESIGN.md §3).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any, TypeVar

from racenet.chain.codec import decode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, Module, ModuleKeeper, Msg, decode_uint, load_params
from racenet.chain.modules.race.schedule import Phase, Schedule
from racenet.chain.modules.race.selection import assign_validators, challenge_indices, expected_openings
from racenet.chain.modules.race.types import (
    CastVote,
    Commitment,
    CommitProof,
    Outcome,
    Params,
    RegisterNode,
    Reveal,
    Revealed,
    Vote,
    proof_leaf,
)
from racenet.chain.modules.validators import Keeper as ValidatorsKeeper
from racenet.crypto.address import decode_address, encode_address
from racenet.crypto.merkle import verify_proof

NAME = "race"
T = TypeVar("T")


def _cycle_key(prefix: bytes, cycle: int, *parts: bytes) -> bytes:
    return b"/".join([prefix, cycle.to_bytes(8, "big"), *parts])


def race_seed(last_app_hash: bytes, cycle: int) -> bytes:
    """The seed every node builds the cycle's model and target vector from."""
    return hashlib.sha256(b"racenet/race-seed" + last_app_hash + cycle.to_bytes(8, "big")).digest()


def challenge_seed(last_app_hash: bytes, cycle: int) -> bytes:
    """The seed that picks the leaves to open, fixed only after every commitment is in."""
    return hashlib.sha256(b"racenet/challenge" + last_app_hash + cycle.to_bytes(8, "big")).digest()


class Keeper(ModuleKeeper):
    """The only reader and writer of race keys."""

    name = NAME

    def __init__(self, validators: ValidatorsKeeper) -> None:
        self.validators = validators

    def params(self, ctx: Context) -> Params:
        """Current race parameters."""
        return self.load(ctx, b"params", Params) or Params()

    def schedule(self, ctx: Context) -> Schedule:
        """The cycle schedule."""
        return Schedule(self.params(ctx), self.load_uint(ctx, b"start") or 1)

    def weights(self, ctx: Context) -> list[tuple[bytes, int]]:
        """Every non-zero voting weight, ordered by address."""
        n = len(b"weight/")
        return [(k[n:], decode_uint(v)) for k, v in self.store(ctx).iterate(b"weight/")]

    def weight(self, ctx: Context, address: bytes) -> int:
        """An account's voting weight this cycle."""
        return self.load_uint(ctx, b"weight/" + address)

    def _set_weight(self, ctx: Context, address: bytes, weight: int) -> None:
        self.save_uint(ctx, b"weight/" + address, weight)
        key = self.consensus_key(ctx, address)
        if key:
            self.validators.set_power(ctx, key, weight)

    def consensus_key(self, ctx: Context, address: bytes) -> bytes:
        """The consensus key a node registered (empty if none)."""
        return self.store(ctx).get(b"node/" + address) or b""

    def register(self, ctx: Context, address: bytes, consensus_key: bytes) -> None:
        """Bind an account to a consensus key, one to one."""
        store = self.store(ctx)
        if store.get(b"node/" + address) is not None:
            raise ChainError(Code.INVALID_MESSAGE, "this account already registered a node")
        if store.get(b"consensus/" + consensus_key) is not None:
            raise ChainError(Code.INVALID_MESSAGE, "this consensus key belongs to another node")
        store.set(b"node/" + address, consensus_key)
        store.set(b"consensus/" + consensus_key, address)

    def seed(self, ctx: Context, cycle: int) -> bytes:
        """The race seed of a cycle (empty before it starts)."""
        return self.store(ctx).get(_cycle_key(b"seed", cycle)) or b""

    def challenge(self, ctx: Context, cycle: int) -> bytes:
        """The challenge seed of a cycle (empty before the reveal window)."""
        return self.store(ctx).get(_cycle_key(b"challenge", cycle)) or b""

    def commitment(self, ctx: Context, cycle: int, address: bytes) -> Commitment | None:
        """A participant's commitment in a cycle."""
        return self.load(ctx, _cycle_key(b"commit", cycle, address), Commitment)

    def commitments(self, ctx: Context, cycle: int) -> list[tuple[bytes, Commitment]]:
        """Every commitment of a cycle, ordered by address."""
        prefix = _cycle_key(b"commit", cycle) + b"/"
        return [(k[len(prefix) :], decode(Commitment, v)) for k, v in self.store(ctx).iterate(prefix)]

    def revealed(self, ctx: Context, cycle: int, address: bytes) -> Revealed | None:
        """The nonces a participant opened in a cycle."""
        return self.load(ctx, _cycle_key(b"reveal", cycle, address), Revealed)

    def challenged(self, ctx: Context, cycle: int, address: bytes) -> list[int]:
        """The leaf indices a participant must open (empty before the challenge)."""
        commitment, seed = self.commitment(ctx, cycle, address), self.challenge(ctx, cycle)
        if commitment is None or not seed:
            return []
        return challenge_indices(seed, address, commitment.count, self.params(ctx).sample_size)

    def assigned(self, ctx: Context, cycle: int, participant: bytes) -> list[bytes]:
        """The validators that must check a participant's reveal."""
        seed = self.challenge(ctx, cycle)
        k = self.params(ctx).validators_per_participant
        return assign_validators(self.weights(ctx), seed, participant, k) if seed else []

    def votes(self, ctx: Context, cycle: int, participant: bytes) -> list[tuple[bytes, CastVote]]:
        """Votes cast on a participant, ordered by validator."""
        prefix = _cycle_key(b"vote", cycle, participant) + b"/"
        return [(k[len(prefix) :], decode(CastVote, v)) for k, v in self.store(ctx).iterate(prefix)]

    def outcome(self, ctx: Context, address: bytes) -> Outcome | None:
        """A node's result in the last tally."""
        return self.load(ctx, b"outcome/" + address, Outcome)

    def begin_cycle_phase(self, ctx: Context) -> None:
        """Fix the race seed at a cycle's first block and the challenge seed at its reveal window."""
        schedule = self.schedule(ctx)
        cycle = schedule.cycle(ctx.height)
        starts = schedule.phase_starts(cycle)
        if ctx.height == starts[Phase.RACE]:
            self.store(ctx).set(_cycle_key(b"seed", cycle), race_seed(ctx.last_app_hash, cycle))
        if ctx.height == starts[Phase.REVEAL]:
            self.store(ctx).set(_cycle_key(b"challenge", cycle), challenge_seed(ctx.last_app_hash, cycle))

    def commit(self, ctx: Context, msg: CommitProof) -> None:
        """Record a commitment during the commit window."""
        self._require_phase(ctx, msg.cycle, Phase.COMMIT)
        if not self.consensus_key(ctx, ctx.signer):
            raise ChainError(Code.UNAUTHORIZED, "register a node (race/RegisterNode) before committing")
        key = _cycle_key(b"commit", msg.cycle, ctx.signer)
        if self.store(ctx).get(key) is not None:
            raise ChainError(Code.INVALID_MESSAGE, f"already committed in cycle {msg.cycle}")
        self.save(ctx, key, Commitment(msg.root, msg.count))

    def reveal(self, ctx: Context, msg: Reveal) -> None:
        """Check an opening against the commitment and the challenge, then record its nonces."""
        self._require_phase(ctx, msg.cycle, Phase.REVEAL)
        commitment = self.commitment(ctx, msg.cycle, ctx.signer)
        if commitment is None:
            raise ChainError(Code.INVALID_MESSAGE, f"no commitment in cycle {msg.cycle}")
        if self.revealed(ctx, msg.cycle, ctx.signer) is not None:
            raise ChainError(Code.INVALID_MESSAGE, f"already revealed in cycle {msg.cycle}")
        indices = self.challenged(ctx, msg.cycle, ctx.signer)
        expected = expected_openings(indices, commitment.count)
        if [leaf.index for leaf in msg.leaves] != expected:
            raise ChainError(Code.INVALID_MESSAGE, f"the challenge asks for leaves {expected}")
        nonces: dict[int, int] = {}
        for leaf in msg.leaves:
            data = proof_leaf(ctx.signer_pub_key, commitment.count, leaf.index, leaf.nonce)
            if not verify_proof(commitment.root, data, leaf.index, commitment.count, leaf.path):
                raise ChainError(Code.INVALID_MESSAGE, f"leaf {leaf.index} does not match the commitment")
            nonces[leaf.index] = leaf.nonce
        for i in indices:
            if i + 1 in nonces and not nonces[i] < nonces[i + 1]:
                raise ChainError(Code.INVALID_MESSAGE, f"nonces at leaves {i} and {i + 1} are not increasing")
        record = Revealed(ctx.signer_pub_key, tuple(nonces[i] for i in indices))
        self.save(ctx, _cycle_key(b"reveal", msg.cycle, ctx.signer), record)

    def vote(self, ctx: Context, msg: Vote) -> None:
        """Record an assigned validator's verdict during the vote window."""
        self._require_phase(ctx, msg.cycle, Phase.VOTE)
        if self.revealed(ctx, msg.cycle, msg.participant) is None:
            raise ChainError(Code.INVALID_MESSAGE, "that participant revealed nothing to vote on")
        if ctx.signer not in self.assigned(ctx, msg.cycle, msg.participant):
            raise ChainError(Code.UNAUTHORIZED, "you are not assigned to validate this participant")
        key = _cycle_key(b"vote", msg.cycle, msg.participant, ctx.signer)
        if self.store(ctx).get(key) is not None:
            raise ChainError(Code.INVALID_MESSAGE, "already voted on this participant")
        self.save(ctx, key, CastVote(msg.accept, msg.checked, msg.mismatches))

    def _require_phase(self, ctx: Context, cycle: int, phase: Phase) -> None:
        schedule = self.schedule(ctx)
        now_cycle, now_phase = schedule.cycle(ctx.height), schedule.phase(ctx.height)
        if (cycle, phase) != (now_cycle, now_phase):
            raise ChainError(
                Code.INVALID_MESSAGE,
                f"{phase.value} for cycle {cycle} is not open: height {ctx.height} is cycle {now_cycle} "
                f"{now_phase.value}",
            )

    def tally(self, ctx: Context) -> None:
        """At a cycle's last block: decide every proof, set next cycle's weights, clear the cycle."""
        schedule = self.schedule(ctx)
        cycle = schedule.cycle(ctx.height)
        if ctx.height != schedule.tally_height(cycle):
            return
        outcomes = {a: self._decide(ctx, cycle, a, c) for a, c in self.commitments(ctx, cycle)}
        for address, _ in self.weights(ctx):
            outcomes.setdefault(address, Outcome(cycle, 0, 0, "absent"))
        if sum(o.weight for o in outcomes.values()) == 0:
            ctx.emit("race_tally", cycle=str(cycle), result="kept: no weight was earned")
        else:
            for address, outcome in sorted(outcomes.items()):
                self._set_weight(ctx, address, outcome.weight)
        for address, outcome in outcomes.items():
            self.save(ctx, b"outcome/" + address, outcome)
        self._clear_cycle(ctx, cycle)

    def _decide(self, ctx: Context, cycle: int, participant: bytes, commitment: Commitment) -> Outcome:
        cap = self.params(ctx).weight_cap
        count = min(commitment.count, cap) if cap else commitment.count
        if self.revealed(ctx, cycle, participant) is None:
            return Outcome(cycle, commitment.count, 0, "no reveal")
        assigned = self.assigned(ctx, cycle, participant)
        if not assigned:
            return Outcome(cycle, commitment.count, count, "unchecked")
        weight = dict(self.weights(ctx))
        assigned_weight = sum(weight[a] for a in assigned)
        votes = [(v, weight.get(a, 0)) for a, v in self.votes(ctx, cycle, participant)]
        voted = sum(w for _, w in votes)
        if voted * 100 < self.params(ctx).quorum_percent * assigned_weight:
            return Outcome(cycle, commitment.count, min(count, weight.get(participant, 0)), "no quorum")
        accepted = sum(w for v, w in votes if v.accept)
        if accepted * 2 > voted:
            return Outcome(cycle, commitment.count, count, "accepted")
        return Outcome(cycle, commitment.count, 0, "rejected")

    def _clear_cycle(self, ctx: Context, cycle: int) -> None:
        """Drop a tallied cycle's proofs and votes; its race seed lives one cycle longer (request routing)."""
        store = self.store(ctx)
        stale = [_cycle_key(p, cycle) for p in (b"challenge", b"commit", b"reveal", b"vote")]
        if cycle > 0:
            stale.append(_cycle_key(b"seed", cycle - 1))
        for prefix in stale:
            for k, _ in list(store.iterate(prefix)):
                store.delete(k)

    def set_params(self, ctx: Context, params: Params) -> None:
        """Replace the race parameters."""
        if min(params.race_blocks, params.commit_blocks, params.reveal_blocks, params.vote_blocks) < 1:
            raise ValueError("every phase needs at least one block")
        self.save(ctx, b"params", params)

    def set_start(self, ctx: Context, height: int) -> None:
        """Set the height of the first cycle's first block."""
        self.save_uint(ctx, b"start", height)

    def set_genesis_weight(self, ctx: Context, address: bytes, weight: int) -> None:
        """A genesis participant's weight (its validator power comes from the genesis validators)."""
        self.save_uint(ctx, b"weight/" + address, weight)


class RaceModule(Module):
    """Module wiring: messages, hooks, genesis and queries."""

    name = NAME
    messages = (RegisterNode, CommitProof, Reveal, Vote)

    def __init__(self, validators: ValidatorsKeeper) -> None:
        self.keeper = Keeper(validators)

    def init_genesis(self, ctx: Context, state: dict[str, Any]) -> None:
        """Params, the first cycle's start, and genesis nodes with their weights."""
        self.keeper.set_params(ctx, load_params(Params, state.get("params", {})))
        self.keeper.set_start(ctx, int(state.get("start", ctx.height + 1)))
        for entry in state.get("nodes", []):
            address = decode_address(entry["address"])
            self.keeper.register(ctx, address, bytes.fromhex(entry["consensus_pub_key"]))
            self.keeper.set_genesis_weight(ctx, address, int(entry.get("weight", 0)))

    def export_genesis(self, ctx: Context) -> dict[str, Any]:
        """Params, start height and registered nodes with their weights."""
        k = self.keeper
        nodes = [
            {"address": encode_address(a), "consensus_pub_key": key.hex(), "weight": k.weight(ctx, a)}
            for a, key in self._nodes(ctx)
        ]
        return {"params": asdict(k.params(ctx)), "start": k.schedule(ctx).start, "nodes": nodes}

    def _nodes(self, ctx: Context) -> list[tuple[bytes, bytes]]:
        n = len(b"node/")
        return [(k[n:], v) for k, v in ctx.module_store(NAME).iterate(b"node/")]

    def handle(self, ctx: Context, msg: Msg) -> bytes:
        """Execute a race message."""
        if isinstance(msg, RegisterNode):
            self.keeper.register(ctx, ctx.signer, msg.consensus_pub_key)
        elif isinstance(msg, CommitProof):
            self.keeper.commit(ctx, msg)
        elif isinstance(msg, Reveal):
            self.keeper.reveal(ctx, msg)
        elif isinstance(msg, Vote):
            self.keeper.vote(ctx, msg)
        return b""

    def begin_block(self, ctx: Context) -> None:
        """Fix seeds at phase boundaries."""
        self.keeper.begin_cycle_phase(ctx)

    def end_block(self, ctx: Context) -> list[Any]:
        """Tally at the cycle's last block (validator power flows through the validators module)."""
        self.keeper.tally(ctx)
        return []

    def query(self, ctx: Context, path: str, data: bytes) -> Any:
        """`params`, `cycle`, `nodes`, `challenge` / `reveal` / `assignments` (data: bech32 address)."""
        k = self.keeper
        if path == "params":
            return asdict(k.params(ctx))
        if path == "cycle":
            return self._cycle_info(ctx)
        if path == "nodes":
            return self._nodes_info(ctx)
        address = decode_address(data.decode()) if data else b""
        cycle = k.schedule(ctx).cycle(ctx.height)
        if path == "challenge":
            commitment = k.commitment(ctx, cycle, address)
            return {
                "cycle": cycle,
                "indices": k.challenged(ctx, cycle, address),
                "count": commitment.count if commitment else 0,
            }
        if path == "reveal":
            r = k.revealed(ctx, cycle, address)
            return None if r is None else {"cycle": cycle, "pub_key": r.pub_key.hex(), "nonces": list(r.nonces)}
        if path == "assignments":
            participants = [a for a, _ in k.commitments(ctx, cycle) if address in k.assigned(ctx, cycle, a)]
            return {"cycle": cycle, "participants": [encode_address(a) for a in participants]}
        return super().query(ctx, path, data)

    def _cycle_info(self, ctx: Context) -> dict[str, Any]:
        k = self.keeper
        schedule = k.schedule(ctx)
        cycle = schedule.cycle(ctx.height)
        return {
            "height": ctx.height,
            "cycle": cycle,
            "phase": schedule.phase(ctx.height).value,
            "phase_starts": {p.value: h for p, h in schedule.phase_starts(cycle).items()},
            "tally_height": schedule.tally_height(cycle),
            "race_seed": k.seed(ctx, cycle).hex(),
            "challenge_seed": k.challenge(ctx, cycle).hex(),
            "preset": k.params(ctx).preset,
            "difficulty": k.params(ctx).difficulty,
        }

    def _nodes_info(self, ctx: Context) -> list[dict[str, Any]]:
        k = self.keeper
        cycle = k.schedule(ctx).cycle(ctx.height)
        out = []
        for address, key in self._nodes(ctx):
            outcome = k.outcome(ctx, address)
            commitment = k.commitment(ctx, cycle, address)
            out.append(
                {
                    "address": encode_address(address),
                    "consensus_pub_key": key.hex(),
                    "weight": k.weight(ctx, address),
                    "power": k.validators.power(ctx, key),
                    "committed": commitment.count if commitment else None,
                    "last_outcome": asdict(outcome) if outcome else None,
                }
            )
        return out
