"""dummy: reimbursement of the dummy requests validators send when user traffic is low (whitepaper §6).

A dummy request is an ordinary signed inference request: an issuer account pays for it, the executor runs it and
is checked like any other. To be reimbursed, a weight holder first commits `commitment(chain, itself, request id,
salt)` (`MsgCommit`), which reveals nothing of the request, at least one beacon round before the request starts.
Once the task's cycle has settled (verification no longer holds the task) it reveals the id and salt in
`MsgClaim`, with the developer's signature naming it, and the pool pays it the request's cost. Rules:
- only weight holders commit and claim, and a claimant is never the request's executor;
- the commitment's round precedes the request's routing round (a commitment made after the Start does not count);
- a request is claimed once; a claimant is reimbursed at most `cycle_budget × weight / total weight` per cycle;
- the pool is the bank escrow `dummy/pool`, funded at genesis; nothing else is held by this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Protocol

from racenet.chain.authority import require_authority
from racenet.chain.collections import ADDRESS, HASH, U64, UVARINT, Item, KeySet, Map, Record, UintMap, pair, triple
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
from racenet.chain.modules.dummy.types import (
    CLAIMANT,
    PARAMS,
    POOL,
    Claimant,
    ClaimedEntry,
    Commitment,
    CommitmentEntry,
    DummyGenesis,
    MsgClaim,
    MsgCommit,
    MsgUpdateParams,
    Params,
    Pool,
    SpentEntry,
    claim_sign_bytes,
    commitment,
)
from racenet.chain.modules.inference.types import ReceiptStatus, RequestInfo
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.modules.verification.types import Task
from racenet.chain.scalars import Address, Amount
from racenet.crypto.address import address_from_pubkey, encode_address
from racenet.crypto.keys import PublicKey

NAME = "dummy"
POOL_ID = b"pool"
"""The bank escrow id of the dummy pool (module `dummy`)."""


class BankKeeper(Protocol):
    """What dummy needs of bank: the pool escrow."""

    def escrow_balance(self, ctx: Context, module: str, escrow_id: bytes) -> int: ...
    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None: ...
    def module_escrows(self, ctx: Context, module: str) -> list[tuple[bytes, int]]: ...


class RaceKeeper(Protocol):
    """What dummy needs of race: weights (who may claim, and the caps) and the cycle schedule."""

    def schedule(self, ctx: Context) -> Schedule: ...
    def weight(self, ctx: Context, address: bytes) -> int: ...
    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]: ...


class BeaconKeeper(Protocol):
    """What dummy needs of the beacon: the first round unknown at a height (requests are routed by one)."""

    def round_after(self, ctx: Context, height: int) -> int: ...


class InferenceKeeper(Protocol):
    """What dummy needs of inference: a request's receipt (developer, executor, routing round, cost)."""

    def query_request(self, ctx: Context, request_id: bytes) -> RequestInfo | None: ...


class VerificationKeeper(Protocol):
    """What dummy needs of verification: whether a task is still unsettled."""

    def query_task(self, ctx: Context, request_id: bytes) -> Task | None: ...


class Keeper(ModuleKeeper):
    """The only reader and writer of dummy state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    commitments = Map(b"commit/", pair(ADDRESS, HASH), Record(Commitment))
    expiries = KeySet(b"expiry/", triple(U64, ADDRESS, HASH))
    open_count = UintMap(b"open/", ADDRESS)
    claimed = Map(b"claimed/", HASH, UVARINT)
    prunes = KeySet(b"prune/", pair(U64, HASH))
    spent = UintMap(b"spent/", pair(U64, ADDRESS))

    def __init__(
        self,
        bank: BankKeeper,
        race: RaceKeeper,
        beacon: BeaconKeeper,
        inference: InferenceKeeper,
        verification: VerificationKeeper,
    ) -> None:
        self.bank = bank
        self.race = race
        self.beacon = beacon
        self.inference = inference
        self.verification = verification

    def cap(self, ctx: Context, claimant: bytes) -> int:
        """What `claimant` may be reimbursed per cycle: the cycle budget times its share of the weight."""
        total = sum(w for _, w in self.race.all_weights(ctx))
        weight = self.race.weight(ctx, claimant)
        return int(self.params.get(ctx).cycle_budget) * weight // total if total else 0

    def _weight_holder(self, ctx: TxContext) -> None:
        if self.race.weight(ctx, ctx.tx.signer) <= 0:
            raise ChainError(Code.UNAUTHORIZED, "only holders of Race weight commit to and claim dummy requests")

    def add_commitment(self, ctx: Context, claimant: bytes, value: bytes, record: Commitment) -> None:
        """Store one commitment with its expiry entry and count it against the claimant."""
        self.commitments.set(ctx, (claimant, value), record)
        self.expiries.add(ctx, (Amount(record.expiry), claimant, value))
        self.open_count.set(ctx, claimant, self.open_count.get(ctx, claimant) + 1)

    def _drop_commitment(self, ctx: Context, claimant: bytes, value: bytes, record: Commitment) -> None:
        self.commitments.remove(ctx, (claimant, value))
        self.expiries.remove(ctx, (Amount(record.expiry), claimant, value))
        self.open_count.set(ctx, claimant, self.open_count.get(ctx, claimant) - 1)

    def handle_commit(self, ctx: TxContext, msg: MsgCommit) -> None:
        """dummy/Commit: record commitments to future dummy requests, with the first beacon round unknown now."""
        self._weight_holder(ctx)
        params = self.params.get(ctx)
        signer = ctx.tx.signer
        if self.open_count.get(ctx, signer) + len(msg.commitments) > params.max_commitments:
            raise ChainError(Code.OUT_OF_RANGE, f"at most {params.max_commitments} open commitments per validator")
        height = ctx.block.height
        record = Commitment(
            height=height, round=self.beacon.round_after(ctx, height), expiry=height + params.commitment_blocks
        )
        for value in msg.commitments:
            if self.commitments.has(ctx, (signer, value)):
                raise ChainError(Code.ALREADY_DONE, f"commitment {value.hex()} is already open")
            self.add_commitment(ctx, signer, value, record)
        ctx.emit("dummy_commit", claimant=encode_address(signer), count=str(len(msg.commitments)))

    def handle_claim(self, ctx: TxContext, msg: MsgClaim) -> None:
        """dummy/Claim: reveal a settled dummy request and be reimbursed its cost from the pool (see the rules)."""
        self._weight_holder(ctx)
        signer = ctx.tx.signer
        info = self.inference.query_request(ctx, msg.request_id)
        receipt = None if info is None else info.receipt
        if receipt is None or receipt.status != ReceiptStatus.FINISHED:
            raise ChainError(Code.NOT_FOUND, "no finished request with this id")
        if self.claimed.has(ctx, msg.request_id):
            raise ChainError(Code.ALREADY_DONE, "this request was already claimed")
        key = (signer, commitment(ctx.block.chain_id, signer, msg.request_id, msg.salt))
        record = self.commitments.get(ctx, key)
        if record is None:
            raise ChainError(Code.NOT_FOUND, "the claimant has no open commitment to this request and salt")
        if record.round >= receipt.route_round:
            raise ChainError(Code.OUT_OF_RANGE, "the commitment was made after the request started")
        if address_from_pubkey(msg.developer_key) != receipt.developer:
            raise ChainError(Code.UNAUTHORIZED, "the key is not the request's developer's")
        signed = claim_sign_bytes(ctx.block.chain_id, msg.request_id, signer)
        if not PublicKey(msg.developer_key).verify(signed, msg.developer_signature):
            raise ChainError(Code.BAD_SIGNATURE, "the developer did not sign this claim for this claimant")
        if receipt.executor == signer:
            raise ChainError(Code.UNAUTHORIZED, "a validator is not reimbursed for a request it executed")
        if self.verification.query_task(ctx, msg.request_id) is not None:
            raise ChainError(Code.TOO_EARLY, "the request's task is not settled yet")
        cycle = self.race.schedule(ctx).cycle(ctx.block.height)
        spent = int(self.spent.get(ctx, (cycle, signer))) + int(receipt.cost)
        if spent > self.cap(ctx, signer):
            raise ChainError(Code.OUT_OF_RANGE, f"over this cycle's cap of {self.cap(ctx, signer)} nicoin")
        self.bank.release(ctx, NAME, POOL_ID, signer, receipt.cost)
        self.spent.set(ctx, (cycle, signer), spent)
        self._drop_commitment(ctx, signer, key[1], record)
        self.claimed.set(ctx, msg.request_id, receipt.prune_height)
        self.prunes.add(ctx, (receipt.prune_height, msg.request_id))
        ctx.emit(
            "dummy_claim", request_id=msg.request_id.hex(), claimant=encode_address(signer), amount=str(receipt.cost)
        )

    def end_block(self, ctx: Context) -> None:
        """Drop expired commitments and claimed ids whose receipt is gone; forget the last cycle's spending."""
        height = ctx.block.height
        for _, claimant, value in self.expiries.keys(ctx, (height,)):
            with isolated(ctx, NAME, f"expiry of commitment {value.hex()}") as item:
                record = self.commitments.get(item, (claimant, value))
                if record is None:
                    raise ChainError(Code.INTERNAL, "an expiry entry without its commitment")
                self._drop_commitment(item, claimant, value, record)
        for _, request_id in self.prunes.keys(ctx, (height,)):
            with isolated(ctx, NAME, f"pruning of claim {request_id.hex()}") as item:
                self.prunes.remove(item, (Amount(height), request_id))
                self.claimed.remove(item, request_id)
        schedule = self.race.schedule(ctx)
        cycle = schedule.cycle(height)
        if cycle and schedule.cycle_start(cycle) == height:
            with isolated(ctx, NAME, "last cycle's reimbursements") as item:
                self.spent.clear(item, (cycle - 1,))

    def check_state(self, ctx: Context) -> None:
        """The pool is the module's only escrow; each claimant's count and the expiry index match its commitments."""
        for escrow_id, amount in self.bank.module_escrows(ctx, NAME):
            if escrow_id != POOL_ID:
                raise InvariantBroken(f"dummy escrow {escrow_id.hex()} ({amount}) is not the pool")
        counts: dict[bytes, int] = {}
        expected = set()
        for (claimant, value), record in self.commitments.items(ctx):
            counts[claimant] = counts.get(claimant, 0) + 1
            expected.add((record.expiry, claimant, value))
        if {c: int(n) for c, n in self.open_count.items(ctx)} != counts:
            raise InvariantBroken("open commitment counts do not match the commitments")
        if {(int(e), c, v) for e, c, v in self.expiries.keys(ctx)} != expected:
            raise InvariantBroken("the expiry index does not list exactly the open commitments")

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """dummy/UpdateParams: governance replaces the params."""
        require_authority(ctx, "change dummy params")
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    def query_params(self, ctx: Context, _: None) -> Params:
        """The dummy parameters."""
        return self.params.get(ctx)

    def query_pool(self, ctx: Context, _: None) -> Pool:
        """What the pool holds and may pay per cycle."""
        balance = self.bank.escrow_balance(ctx, NAME, POOL_ID)
        return Pool(Amount(balance), self.params.get(ctx).cycle_budget)

    def query_claimant(self, ctx: Context, address: bytes) -> Claimant:
        """A validator's open commitments, its reimbursements this cycle and its cap."""
        cycle = self.race.schedule(ctx).cycle(ctx.block.height)
        return Claimant(
            address=Address(address),
            open_commitments=int(self.open_count.get(ctx, address)),
            spent=Amount(self.spent.get(ctx, (cycle, address))),
            cap=Amount(self.cap(ctx, address)),
        )


class DummyModule(Module[Keeper, DummyGenesis]):
    """Module wiring: commit and claim, pruning hooks, queries and the state invariant."""

    name = NAME
    genesis_type = DummyGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgCommit: Keeper.handle_commit,
        MsgClaim: Keeper.handle_claim,
        MsgUpdateParams: Keeper.handle_update_params,
    }
    queries: ClassVar[QueryTable] = {
        PARAMS: Keeper.query_params,
        POOL: Keeper.query_pool,
        CLAIMANT: Keeper.query_claimant,
    }

    def init_genesis(self, ctx: Context, state: DummyGenesis) -> None:
        """Params, open commitments, claimed ids and reimbursements."""
        k = self.keeper
        k.params.set(ctx, state.params)
        for entry in state.commitments:
            k.add_commitment(ctx, entry.claimant, entry.commitment, entry.record)
        for claimed in state.claimed:
            k.claimed.set(ctx, claimed.request_id, claimed.prune_height)
            k.prunes.add(ctx, (Amount(claimed.prune_height), claimed.request_id))
        for spent in state.spent:
            k.spent.set(ctx, (Amount(spent.cycle), spent.claimant), spent.amount)

    def export_genesis(self, ctx: Context) -> DummyGenesis:
        """Everything init_genesis reads."""
        k = self.keeper
        return DummyGenesis(
            params=k.params.get(ctx),
            commitments=tuple(CommitmentEntry(Address(c), v, r) for (c, v), r in k.commitments.items(ctx)),
            claimed=tuple(ClaimedEntry(i, int(p)) for i, p in k.claimed.items(ctx)),
            spent=tuple(SpentEntry(int(c), Address(a), n) for (c, a), n in k.spent.items(ctx)),
        )

    def end_block(self, ctx: Context) -> None:
        """Prune expired commitments and old claims."""
        self.keeper.end_block(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """state: the pool is the only escrow; commitment counts and expiries match."""
        return {"state": self.keeper.check_state}
