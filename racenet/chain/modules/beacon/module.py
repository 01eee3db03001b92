"""beacon: the chain's randomness — threshold BLS rounds carried in CometBFT vote extensions, plus commit–reveal.

Every block can complete one round. Validators' agents put partial signatures of the pending round in
their precommit vote extensions; the next proposer combines them into the group signature and puts it,
with the extensions themselves, in a beacon transaction at the head of its block. Round r signs
(r, output of round r-1, the commit–reveal mix of the previous cycle); its output is the hash of that
signature, which is unique, so nobody can choose among outputs — only delay one.

Each cycle the heaviest weight holders run a Joint-Feldman key generation in the same channel: deal
(Feldman commitments and encrypted shares), complain about a share that does not match, answer
complaints with the share in the clear, and at the end of the dispute window the qualified dealers'
commitments make the new group key, which signs from the next height on. The previous group signs
until then. A malformed dealing, an unanswered or wrongly answered complaint, a forged partial
signature, a missing dealing and a missing or wrong reveal are recorded as penalties.

Draws use `round_after(height)`: a round whose partial signatures nobody could make before the block at
`height` was fixed (see docs/beacon.md for who knows what, when).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol

from racenet.chain.authority import require_authority
from racenet.chain.codec import DecodeError, decode
from racenet.chain.collections import ADDRESS, RAW, STRING, U64, Item, KeySet, Map, Record, UintItem, pair, triple
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
from racenet.chain.modules.beacon.dkg import allocate, dealing_fault, group_key, holder_of
from racenet.chain.modules.beacon.types import (
    BEACON_TX_PREFIX,
    GROUPS,
    KEY,
    MAX_EXTENSION_BYTES,
    MIX_DOMAIN,
    PARAMS,
    PENALTIES,
    ROUND,
    ROUNDS,
    STATUS,
    Answer,
    BeaconBlock,
    BeaconGenesis,
    BeaconKey,
    Complaint,
    Dealing,
    Epoch,
    Extension,
    Group,
    Groups,
    MsgRegisterKey,
    MsgUpdateParams,
    Params,
    Penalties,
    Penalty,
    Round,
    Rounds,
    SignedExtension,
    Status,
    commitment,
    possession_statement,
    round_message,
    round_output,
    well_formed_reveal,
)
from racenet.chain.modules.race.schedule import Schedule
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PublicKey
from racenet.crypto.threshold import (
    InvalidPoint,
    combine,
    evaluate_commitments,
    g2,
    share_matches,
    verify,
    verify_possession,
)

NAME = "beacon"
GENESIS_DOMAIN = b"racenet/beacon/genesis/v1\x00"
MAX_ROUNDS_QUERY = 100


class RaceKeeper(Protocol):
    """What the beacon needs of race: the schedule, weights and which node owns a consensus key."""

    def schedule(self, ctx: Context) -> Schedule: ...
    def weight(self, ctx: Context, address: bytes) -> int: ...
    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]: ...
    def node_of(self, ctx: Context, consensus_key: bytes) -> bytes: ...
    def node_keys(self, ctx: Context) -> list[bytes]: ...


def vote_extension_sign_bytes(chain_id: str, height: int, round_: int, extension: bytes) -> bytes:
    """The bytes a CometBFT validator signs for its vote extension: a length-delimited CanonicalVoteExtension
    (extension = 1, sfixed64 height = 2, sfixed64 round = 3, chain_id = 4; proto3 leaves out zero fields)."""
    body = bytearray()
    if extension:
        body += b"\x0a" + _uvarint(len(extension)) + extension
    if height:
        body += b"\x11" + height.to_bytes(8, "little", signed=True)
    if round_:
        body += b"\x19" + round_.to_bytes(8, "little", signed=True)
    if chain_id:
        body += b"\x22" + _uvarint(len(chain_id.encode())) + chain_id.encode()
    return _uvarint(len(body)) + bytes(body)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def parse_beacon_tx(raw: bytes) -> BeaconBlock | None:
    """The beacon block a transaction carries (None if it is not a well-formed beacon transaction)."""
    if not raw.startswith(BEACON_TX_PREFIX):
        return None
    try:
        return decode(BeaconBlock, raw[len(BEACON_TX_PREFIX) :])
    except (DecodeError, ValueError):
        return None


class Keeper(ModuleKeeper):
    """The only reader and writer of beacon state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    first = UintItem(b"first")
    keys = Map(b"key/", ADDRESS, Record(BeaconKey))
    epochs = Map(b"epoch/", U64, Record(Epoch))
    dealings = Map(b"dealing/", pair(U64, ADDRESS), Record(Dealing))
    bad_dealers = KeySet(b"bad/", pair(U64, ADDRESS))
    complaints = KeySet(b"complaint/", triple(U64, ADDRESS, ADDRESS))
    answers = Map(b"answer/", triple(U64, ADDRESS, ADDRESS), Record(Answer))
    groups = Map(b"group/", U64, Record(Group))
    rounds = Map(b"round/", U64, Record(Round))
    latest = UintItem(b"latest")
    commits = Map(b"commit/", pair(U64, ADDRESS), RAW)
    reveals = Map(b"reveal/", pair(U64, ADDRESS), RAW)
    mixes = Map(b"mix/", U64, RAW)
    penalties = KeySet(b"penalty/", triple(U64, ADDRESS, STRING))

    def __init__(self, race: RaceKeeper) -> None:
        self.race = race

    # --- schedule -------------------------------------------------------------------------------

    def dkg_base(self, ctx: Context, epoch: int) -> int:
        """The block an epoch's holders are fixed in: its cycle's first block (for epoch 0 the genesis, so the
        genesis holders make the first key at once). Its windows start two blocks later: the first
        extensions that can see the holders are made at the next height and included in the one after."""
        if epoch == 0:
            return int(self.first.get(ctx)) - 1
        return int(self.race.schedule(ctx).cycle_start(epoch))

    def dkg_phase(self, ctx: Context, height: int) -> tuple[int, str]:
        """The epoch whose key generation runs at `height` and its phase: deal, complain, dispute or ''."""
        epoch = self.race.schedule(ctx).cycle(height)
        p = self.params.get(ctx)
        offset = height - self.dkg_base(ctx, epoch) - 2
        for phase, length in (("deal", p.deal_blocks), ("complain", p.complaint_blocks), ("dispute", p.dispute_blocks)):
            if 0 <= offset < length:
                return epoch, phase
            offset -= length
        return epoch, ""

    def reveal_phase(self, ctx: Context, height: int) -> tuple[int, str]:
        """The cycle whose commit–reveal runs at `height` and its phase: commit, reveal or ''."""
        schedule = self.race.schedule(ctx)
        cycle = schedule.cycle(height)
        p = self.params.get(ctx)
        offset = height - self.dkg_base(ctx, cycle) - 2
        if 0 <= offset < p.commit_blocks:
            return cycle, "commit"
        if p.commit_blocks <= offset < p.commit_blocks + p.reveal_blocks:
            return cycle, "reveal"
        return cycle, ""

    # --- rounds ---------------------------------------------------------------------------------

    def genesis_output(self, ctx: Context) -> bytes:
        """The 'output of round 0' that round 1 chains from."""
        return hashlib.sha256(GENESIS_DOMAIN + ctx.block.chain_id.encode()).digest()

    def output(self, ctx: Context, round_: int) -> bytes:
        """A round's output (empty until it is recorded)."""
        if round_ == 0:
            return self.genesis_output(ctx)
        record = self.rounds.get(ctx, round_)
        return record.output if record else b""

    def pending_round(self, ctx: Context) -> int:
        """The round the next beacon transaction completes."""
        return int(self.latest.get(ctx)) + 1

    def round_after(self, ctx: Context, height: int) -> int:
        """The first round whose partial signatures are first made at an extension height ≥ `height`, so
        nobody can know its output before the block at `height` was fixed. Round L+1's partials are first
        made at the height of the block that recorded round L; a later round's only after that."""
        latest = int(self.latest.get(ctx))
        record = self.rounds.get(ctx, latest) if latest else None
        return latest + 1 if record is not None and record.height >= height else latest + 2

    def mix_for(self, ctx: Context, height: int) -> bytes:
        """The commit–reveal mix signed into rounds at an extension height: the previous cycle's."""
        cycle = self.race.schedule(ctx).cycle(height)
        if cycle == 0:
            return self.genesis_output(ctx)
        return self.mixes.get(ctx, cycle - 1) or self.genesis_output(ctx)

    def group_at(self, ctx: Context, height: int) -> Group | None:
        """The group that signs at an extension height: the newest one active by then."""
        for _, group in reversed(self.groups.items(ctx)):
            if group.active_from <= height:
                return group
        return None

    def has_group(self, ctx: Context) -> bool:
        """Whether any group key exists yet (before the first, no round can complete)."""
        return bool(self.groups.keys(ctx))

    def round_to_sign(self, ctx: Context, height: int, block: BeaconBlock | None) -> tuple[int, bytes] | None:
        """The round and message an extension at `height` signs, given the beacon transaction of the block at
        `height` (which may complete the pending round); None if no group signs then."""
        group = self.group_at(ctx, height)
        if group is None:
            return None
        round_, previous = self.pending_round(ctx), self.output(ctx, self.pending_round(ctx) - 1)
        if block is not None and block.signature and block.round == round_:
            round_, previous = round_ + 1, round_output(block.signature)
        return round_, round_message(round_, previous, self.mix_for(ctx, height))

    def key_of(self, ctx: Context, address: bytes) -> bytes:
        """A node's registered BLS beacon key (b"" if none): it also signs the node's check duties."""
        entry = self.keys.get(ctx, address)
        return b"" if entry is None else entry.key

    def share_key(self, group: Group, index: int) -> bytes:
        """The public key of one share index of a group (G2)."""
        return bytes(evaluate_commitments([g2(c) for c in group.commitments], index).to_compressed_bytes())

    # --- the beacon transaction -----------------------------------------------------------------

    def authentic(self, ctx: Context, block: BeaconBlock) -> list[tuple[int, bytes, Extension]]:
        """The block's extensions that a registered node signed, once each, decoded: (position, node, extension)."""
        out: list[tuple[int, bytes, Extension]] = []
        seen: set[bytes] = set()
        if len(block.extensions) > len(self.race.node_keys(ctx)):
            return out  # more than one per registered node: a proposer padding the block with work
        for i, signed in enumerate(block.extensions):
            sign_bytes = vote_extension_sign_bytes(
                ctx.block.chain_id, block.ext_height, block.commit_round, signed.extension
            )
            if len(signed.validator) != 32 or not PublicKey(signed.validator).verify(sign_bytes, signed.signature):
                continue
            node = self.race.node_of(ctx, signed.validator)
            if not node or node in seen or len(signed.extension) > MAX_EXTENSION_BYTES:
                continue
            try:
                extension = decode(Extension, signed.extension) if signed.extension else Extension()
            except (DecodeError, ValueError):
                continue
            seen.add(node)
            out.append((i, node, extension))
        return out

    def block_fault(self, ctx: Context, block: BeaconBlock) -> str:
        """Why a proposed beacon transaction is invalid ('' if valid): ProcessProposal rejects such a block."""
        if block.ext_height != ctx.block.height - 1:
            return f"extensions of height {block.ext_height}, expected {ctx.block.height - 1}"
        authentic = self.authentic(ctx, block)
        if len(authentic) != len(block.extensions):
            return "an extension is unsigned, duplicated, malformed or from an unregistered node"
        if block.signature and not self._round_valid(ctx, block):
            return f"round {block.round} is not the pending round's group signature"
        positions = {i: (node, ext) for i, node, ext in authentic}
        for i in block.forged:
            if i not in positions or not self._forged(ctx, block, positions[i][1]):
                return f"extension {i} is flagged as forged but its partial signatures verify"
        return ""

    def _round_valid(self, ctx: Context, block: BeaconBlock) -> bool:
        group = self.group_at(ctx, block.ext_height)
        if group is None or block.round != self.pending_round(ctx):
            return False
        message = round_message(block.round, self.output(ctx, block.round - 1), self.mix_for(ctx, block.ext_height))
        try:
            return verify(g2(group.public_key), message, block.signature)
        except InvalidPoint:
            return False

    def _forged(self, ctx: Context, block: BeaconBlock, extension: Extension) -> bool:
        """Whether an extension carries a partial signature of the pending round that does not verify."""
        group = self.group_at(ctx, block.ext_height)
        if group is None or extension.round != self.pending_round(ctx):
            return False
        message = round_message(
            extension.round, self.output(ctx, extension.round - 1), self.mix_for(ctx, block.ext_height)
        )
        for partial in extension.partials:
            if not 1 <= partial.index <= sum(h.count for h in group.holders):
                return True
            if not verify(g2(self.share_key(group, partial.index)), message, partial.signature):
                return True
        return False

    def propose(self, ctx: Context, commit_round: int, votes: Sequence[SignedExtension]) -> BeaconBlock:
        """The beacon transaction a proposer builds from the previous height's vote extensions: the authentic
        ones, the pending round's group signature if enough valid partials came, and forged ones flagged."""
        block = BeaconBlock(ctx.block.height - 1, commit_round, 0, b"", tuple(votes))
        authentic = self.authentic(ctx, block)
        block = dataclasses.replace(block, extensions=tuple(block.extensions[i] for i, _, _ in authentic))
        extensions = [ext for _, _, ext in authentic]
        group, round_ = self.group_at(ctx, block.ext_height), self.pending_round(ctx)
        if group is None:
            return block
        signature = self._combine(ctx, block, group, round_, extensions)
        if signature is None:
            forged = tuple(i for i, ext in enumerate(extensions) if self._forged(ctx, block, ext))
            if forged:
                honest = [ext for i, ext in enumerate(extensions) if i not in forged]
                signature = self._combine(ctx, block, group, round_, honest)
                block = dataclasses.replace(block, forged=forged)
        if signature is None:
            return block
        return dataclasses.replace(block, round=round_, signature=signature)

    def _combine(
        self, ctx: Context, block: BeaconBlock, group: Group, round_: int, extensions: Sequence[Extension]
    ) -> bytes | None:
        """The group signature from the extensions' partials of `round_`, if there are enough and it verifies."""
        partials: dict[int, bytes] = {}
        total = sum(h.count for h in group.holders)
        for ext in extensions:
            if ext.round == round_:
                partials.update((p.index, p.signature) for p in ext.partials if 1 <= p.index <= total)
        if len(partials) < group.threshold:
            return None
        try:
            signature = combine(partials, group.threshold)
        except InvalidPoint:
            return None
        candidate = dataclasses.replace(block, round=round_, signature=signature)
        return signature if self._round_valid(ctx, candidate) else None

    def apply_block(self, ctx: Context, raw: bytes) -> None:
        """Run a beacon transaction: each authentic extension's messages, forged-partial penalties, the round."""
        block = parse_beacon_tx(raw)
        if block is None or block.ext_height != ctx.block.height - 1:
            ctx.emit("beacon_ignored", reason="malformed or stale beacon transaction")
            return
        authentic = self.authentic(ctx, block)
        cycle = self.race.schedule(ctx).cycle(ctx.block.height)
        for position, node, extension in authentic:
            with isolated(ctx, NAME, f"extension of {encode_address(node)}") as item:
                self._apply_extension(item, node, extension)
            if position in block.forged and self._forged(ctx, block, extension):
                self.penalize(ctx, cycle, node, "forged partial signature")
        if block.signature and self._round_valid(ctx, block):
            self._record_round(ctx, block)

    def _record_round(self, ctx: Context, block: BeaconBlock) -> None:
        group = self.group_at(ctx, block.ext_height)
        assert group is not None
        record = Round(
            round=block.round,
            epoch=group.epoch,
            previous=self.output(ctx, block.round - 1),
            mix=self.mix_for(ctx, block.ext_height),
            signature=block.signature,
            output=round_output(block.signature),
            height=ctx.block.height,
        )
        self.rounds.set(ctx, block.round, record)
        self.latest.set(ctx, block.round)
        ctx.emit("beacon_round", round=str(block.round), output=record.output.hex(), epoch=str(group.epoch))

    def _apply_extension(self, ctx: Context, node: bytes, extension: Extension) -> None:
        height = ctx.block.height
        epoch, phase = self.dkg_phase(ctx, height)
        setup = self.epochs.get(ctx, epoch)
        if setup is not None and holder_of(setup, node) is not None:
            if phase == "deal":
                for dealing in extension.dealings[:1]:
                    self._deal(ctx, setup, node, dealing)
            elif phase == "complain":
                for complaint in extension.complaints:
                    self._complain(ctx, setup, node, complaint)
            elif phase == "dispute":
                for answer in extension.answers:
                    self._answer(ctx, setup, node, answer)
        cycle, window = self.reveal_phase(ctx, height)
        if window == "commit" and extension.commits:
            self._commit(ctx, cycle, node, extension.commits[0])
        elif window == "reveal" and extension.reveals:
            self._reveal(ctx, cycle, node, extension.reveals[0])

    def penalize(self, ctx: Context, cycle: int, address: bytes, reason: str) -> None:
        """Record a fault of an account in a cycle (the rewards issue spends these)."""
        self.penalties.add(ctx, (cycle, address, reason))
        ctx.emit("beacon_penalty", address=encode_address(address), cycle=str(cycle), reason=reason)

    # --- key generation -------------------------------------------------------------------------

    def open_epoch(self, ctx: Context) -> None:
        """At a cycle's first block (and at genesis), fix the epoch's holders from the weights the tally set."""
        schedule = self.race.schedule(ctx)
        epoch = schedule.cycle(ctx.block.height)
        if ctx.block.height != self.dkg_base(ctx, epoch) or self.epochs.has(ctx, epoch):
            return
        keys = {k.address: k.key for _, k in self.keys.items(ctx)}
        setup = allocate(epoch, self.params.get(ctx), self.race.all_weights(ctx), keys)
        if not setup.threshold:
            ctx.emit("beacon_dkg", epoch=str(epoch), result="skipped: the heaviest nodes hold at most half the weight")
            return
        self.epochs.set(ctx, epoch, setup)
        ctx.emit("beacon_dkg", epoch=str(epoch), holders=str(len(setup.holders)))

    def _deal(self, ctx: Context, setup: Epoch, dealer: bytes, dealing: Dealing) -> None:
        key = (setup.epoch, dealer)
        if self.dealings.has(ctx, key) or self.bad_dealers.has(ctx, key):
            return
        fault = dealing_fault(setup, dealing)
        if fault:
            self.bad_dealers.add(ctx, key)
            self.penalize(ctx, setup.epoch, dealer, f"bad dealing: {fault}")
            return
        self.dealings.set(ctx, key, dealing)

    def _complain(self, ctx: Context, setup: Epoch, complainer: bytes, complaint: Complaint) -> None:
        if complaint.epoch == setup.epoch and self.dealings.has(ctx, (setup.epoch, complaint.dealer)):
            self.complaints.add(ctx, (setup.epoch, complaint.dealer, complainer))

    def _answer(self, ctx: Context, setup: Epoch, dealer: bytes, answer: Answer) -> None:
        key = (setup.epoch, dealer, answer.complainer)
        if answer.epoch != setup.epoch or not self.complaints.has(ctx, key) or self.answers.has(ctx, key):
            return
        if self.bad_dealers.has(ctx, (setup.epoch, dealer)):
            return
        dealing = self.dealings.get(ctx, (setup.epoch, dealer))
        complainer = holder_of(setup, answer.complainer)
        assert dealing is not None and complainer is not None
        points = [g2(c) for c in dealing.commitments]
        opened = [s.index for s in answer.shares]
        valid = opened == list(complainer.indices) and all(
            share_matches(points, s.index, int.from_bytes(s.share, "big")) for s in answer.shares
        )
        if not valid:
            self.bad_dealers.add(ctx, (setup.epoch, dealer))
            self.penalize(ctx, setup.epoch, dealer, "wrong answer to a complaint")
            return
        self.answers.set(ctx, key, answer)

    def finish_epoch(self, ctx: Context) -> None:
        """At an epoch's last dispute block: disqualify unanswered dealers, penalize absent ones, make the group."""
        height = ctx.block.height
        epoch, phase = self.dkg_phase(ctx, height)
        if phase != "dispute" or self.dkg_phase(ctx, height + 1) == (epoch, "dispute"):
            return
        setup = self.epochs.get(ctx, epoch)
        if setup is None:
            return
        for _, dealer, complainer in self.complaints.keys(ctx, (epoch,)):
            if not self.answers.has(ctx, (epoch, dealer, complainer)) and not self.bad_dealers.has(
                ctx, (epoch, dealer)
            ):
                self.bad_dealers.add(ctx, (epoch, dealer))
                self.penalize(ctx, epoch, dealer, "unanswered complaint")
        qualified = [
            (dealer, dealing)
            for (_, dealer), dealing in self.dealings.items(ctx, (epoch,))
            if not self.bad_dealers.has(ctx, (epoch, dealer))
        ]
        dealt = {dealer for (_, dealer) in self.dealings.keys(ctx, (epoch,))} | {
            dealer for (_, dealer) in self.bad_dealers.keys(ctx, (epoch,))
        }
        for holder in setup.holders:
            if holder.address not in dealt:
                self.penalize(ctx, epoch, holder.address, "no dealing")
        if not qualified:
            ctx.emit("beacon_dkg", epoch=str(epoch), result="failed: no qualified dealer")
            return
        self.groups.set(ctx, epoch, group_key(setup, qualified, height + 1))
        self._prune_before(ctx, epoch)
        ctx.emit("beacon_group", epoch=str(epoch), dealers=str(len(qualified)), active_from=str(height + 1))

    def _prune_before(self, ctx: Context, epoch: int) -> None:
        """Drop the key-generation records of epochs older than `epoch` (their group no longer signs)."""
        for old in [e for e in self.epochs.keys(ctx) if e < epoch]:
            for collection in (self.dealings, self.bad_dealers, self.complaints, self.answers):
                collection.clear(ctx, (old,))
            self.epochs.remove(ctx, old)

    # --- commit-reveal --------------------------------------------------------------------------

    def _commit(self, ctx: Context, cycle: int, node: bytes, value: bytes) -> None:
        if len(value) == 32 and self.race.weight(ctx, node) > 0 and not self.commits.has(ctx, (cycle, node)):
            self.commits.set(ctx, (cycle, node), value)

    def _reveal(self, ctx: Context, cycle: int, node: bytes, value: bytes) -> None:
        committed = self.commits.get(ctx, (cycle, node))
        if committed is None or self.reveals.has(ctx, (cycle, node)):
            return
        if not well_formed_reveal(value) or commitment(node, cycle, value) != committed:
            self.reveals.set(ctx, (cycle, node), b"")
            self.penalize(ctx, cycle, node, "wrong reveal")
            return
        self.reveals.set(ctx, (cycle, node), value)

    def close_reveals(self, ctx: Context) -> None:
        """At a reveal window's last block: fold the reveals into the cycle's mix; penalize missing reveals."""
        height = ctx.block.height
        cycle, window = self.reveal_phase(ctx, height)
        if window != "reveal" or self.reveal_phase(ctx, height + 1) == (cycle, "reveal"):
            return
        previous = self.mixes.get(ctx, cycle - 1) if cycle else None
        mix = hashlib.sha256(MIX_DOMAIN + (previous or self.genesis_output(ctx)))
        for (_, node), _ in self.commits.items(ctx, (cycle,)):
            value = self.reveals.get(ctx, (cycle, node))
            if value:
                mix.update(node + value)
            elif value is None:
                self.penalize(ctx, cycle, node, "no reveal")
        self.mixes.set(ctx, cycle, mix.digest())
        for collection in (self.commits, self.reveals):
            collection.clear(ctx, (cycle,))
        if cycle > 1:
            self.mixes.remove(ctx, cycle - 2)  # rounds of this cycle still sign the previous cycle's mix

    # --- messages and queries -------------------------------------------------------------------

    def handle_register_key(self, ctx: TxContext, msg: MsgRegisterKey) -> None:
        """beacon/RegisterKey: the signer's beacon key, once, with a proof of possession."""
        if self.keys.has(ctx, ctx.tx.signer):
            raise ChainError(Code.ALREADY_DONE, "this account already registered a beacon key")
        if not verify_possession(msg.key, possession_statement(ctx.block.chain_id, ctx.tx.signer), msg.proof):
            raise ChainError(Code.INVALID_MESSAGE, "the proof of possession does not verify for this key and account")
        self.keys.set(ctx, ctx.tx.signer, BeaconKey(ctx.tx.signer, msg.key, msg.proof))

    def query_status(self, ctx: Context, _: None) -> Status:
        """The latest round, the pending round, the active group and the key generation under way."""
        latest = int(self.latest.get(ctx))
        epoch, phase = self.dkg_phase(ctx, ctx.block.height + 1)
        return Status(
            height=ctx.block.height,
            latest=self.rounds.get(ctx, latest) if latest else None,
            pending_round=latest + 1,
            group=self.group_at(ctx, ctx.block.height + 1),
            dkg=self.epochs.get(ctx, epoch),
            dkg_phase=phase,
        )

    def query_round(self, ctx: Context, arg: str) -> Round | None:
        """One round ('' or 'latest': the latest)."""
        number = int(self.latest.get(ctx)) if arg in ("", "latest") else _round_number(arg)
        return self.rounds.get(ctx, number)

    def query_rounds(self, ctx: Context, arg: str) -> Rounds:
        """Up to 100 consecutive rounds from `<first>` (`<first>:<count>`; default the latest 100)."""
        latest = int(self.latest.get(ctx))
        first_text, _, count_text = arg.partition(":")
        count = min(_round_number(count_text) if count_text else MAX_ROUNDS_QUERY, MAX_ROUNDS_QUERY)
        first = _round_number(first_text) if first_text else max(latest - count + 1, 1)
        rounds = tuple(r for n in range(first, min(first + count, latest + 1)) if (r := self.rounds.get(ctx, n)))
        return Rounds(rounds)

    def query_groups(self, ctx: Context, _: None) -> Groups:
        """Every group key, oldest first."""
        return Groups(tuple(g for _, g in self.groups.items(ctx)))

    def query_penalties(self, ctx: Context, _: None) -> Penalties:
        """Every recorded fault."""
        return Penalties(tuple(Penalty(c, a, r) for c, a, r in self.penalties.keys(ctx)))

    def query_key(self, ctx: Context, address: bytes) -> BeaconKey | None:
        """An account's beacon key."""
        return self.keys.get(ctx, address)

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """beacon/UpdateParams: governance changes the group sizes, which the next key generation uses."""
        require_authority(ctx, "change beacon params")
        if msg.params.windows() != self.params.get(ctx).windows():
            raise ChainError(Code.INVALID_MESSAGE, "the beacon windows are fixed at genesis")
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    def query_params(self, ctx: Context, _: None) -> Params:
        """The beacon parameters."""
        return self.params.get(ctx)


def _round_number(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"a round number is a non-negative integer, got {text!r}")
    return int(text)


class BeaconModule(Module[Keeper, BeaconGenesis]):
    """Module wiring: key registration, the beacon transaction's hooks, genesis and queries."""

    name = NAME
    genesis_type = BeaconGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgRegisterKey: Keeper.handle_register_key,
        MsgUpdateParams: Keeper.handle_update_params,
    }
    queries: ClassVar[QueryTable] = {
        STATUS: Keeper.query_status,
        ROUND: Keeper.query_round,
        ROUNDS: Keeper.query_rounds,
        GROUPS: Keeper.query_groups,
        PENALTIES: Keeper.query_penalties,
        KEY: Keeper.query_key,
        PARAMS: Keeper.query_params,
    }

    def init_genesis(self, ctx: Context, state: BeaconGenesis) -> None:
        """Params, genesis beacon keys (each proof checked) and the first block height."""
        schedule = self.keeper.race.schedule(ctx)
        windows = max(state.params.dkg_blocks, state.params.commit_blocks + state.params.reveal_blocks)
        if windows + 2 > schedule.length:  # every window closes inside its own cycle
            raise ValueError(
                f"params: the beacon windows ({windows} blocks) do not fit a {schedule.length}-block cycle"
            )
        self.keeper.params.set(ctx, state.params)
        self.keeper.first.set(ctx, ctx.block.height + 1)
        for key in state.keys:
            if not verify_possession(key.key, possession_statement(ctx.block.chain_id, key.address), key.proof):
                raise ValueError(f"keys: the proof of {encode_address(key.address)}'s beacon key does not verify")
            self.keeper.keys.set(ctx, key.address, key)
        self.keeper.open_epoch(ctx)

    def export_genesis(self, ctx: Context) -> BeaconGenesis:
        """Params and beacon keys (rounds and groups start anew on a chain made from an export)."""
        return BeaconGenesis(params=self.keeper.params.get(ctx), keys=tuple(k for _, k in self.keeper.keys.items(ctx)))

    def begin_block(self, ctx: Context) -> None:
        """Open an epoch's key generation at its cycle's first block."""
        self.keeper.open_epoch(ctx)

    def end_block(self, ctx: Context) -> None:
        """Finish a key generation and a commit–reveal at their windows' last blocks."""
        self.keeper.finish_epoch(ctx)
        self.keeper.close_reveals(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """rounds: the recorded rounds are 1..latest."""
        return {"rounds": self._check_rounds}

    def _check_rounds(self, ctx: Context) -> None:
        latest = int(self.keeper.latest.get(ctx))
        if latest and not self.keeper.rounds.has(ctx, latest):
            raise InvariantBroken(f"latest round {latest} is not recorded")
