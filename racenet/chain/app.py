"""The racenet state machine behind an ABCI-2.0-shaped interface.

Deterministic by construction: integers only, block time as the only clock, no
randomness, no I/O but the store. Each block runs in a branch of the committed
state; `finalize_block` computes the app hash, `commit` persists it atomically.
Modules are wired here in an explicit order (`INIT_GENESIS_ORDER`, `BEGIN_BLOCK_ORDER`,
`END_BLOCK_ORDER`). No exception leaves `finalize_block`: a transaction rejected by the ante
checks changes nothing, one whose message fails keeps only its fee and sequence, and a hook
that fails changes nothing and leaves a `hook_failed` event.

App hash: SHA-256 over (previous app hash, height, the block's sorted key changes),
so equal histories give equal hashes on every node without a full-state tree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Protocol

from racenet import __version__
from racenet.chain.app_state import EXPORT, AppState
from racenet.chain.codec import decode, encode
from racenet.chain.collections import TEXT, Item
from racenet.chain.errors import ChainError, Code
from racenet.chain.jsonform import from_json, to_json
from racenet.chain.module import (
    BlockEnv,
    Context,
    InvariantBroken,
    Module,
    ModuleKeeper,
    Msg,
    TxContext,
    TxEnv,
    isolated,
)
from racenet.chain.modules import (
    auth,
    bank,
    beacon,
    dummy,
    finetune,
    gov,
    inference,
    pool,
    pricing,
    race,
    tokenomics,
    training,
    validators,
    verification,
)
from racenet.chain.modules.beacon import BEACON_TX_PREFIX, Extension, SignedExtension, parse_beacon_tx
from racenet.chain.query import QuerySpec
from racenet.chain.store import Branch, CommittedStore, KVStore, changes_hash_input
from racenet.chain.tx import (
    VerifiedCache,
    VerifiedTx,
    check_message_count,
    check_size,
    decode_envelope,
    decode_messages,
)
from racenet.chain.types import (
    NO_COMMIT,
    BlockRequest,
    ExtendedCommit,
    FinalizeBlockResult,
    InfoResult,
    InitChainRequest,
    InitChainResult,
    QueryResult,
    TxResult,
    ValidatorUpdate,
)

log = logging.getLogger(__name__)

VERIFIED_CACHE_BYTES = 16 * 1024 * 1024
"""Raw bytes of verified transactions kept decoded (mempool, proposal and block share them)."""

INIT_GENESIS_ORDER = (
    "auth",
    "bank",  # mints every genesis balance and escrow before another module could move one
    "validators",
    "race",  # registers the genesis nodes: inference accepts only registered Race nodes as servers
    "beacon",  # checks its windows against the race schedule
    "pricing",  # the unit price, which inference's model prices read
    "inference",
    "verification",
    "dummy",  # reads inference receipts and verification tasks; holds only the pool (minted by bank)
    "gov",  # proposals and their deposit records (bank minted the deposit escrows)
    "pool",  # checks the icon stock bank minted for the liquidity pool's account
    "training",  # params only (jobs in flight are not exported)
    "finetune",  # params only (jobs in flight are not exported); reads inference's prices and keys
    "tokenomics",  # last: what every module's genesis put in bank beyond the core incentive is the allocations
)
BEGIN_BLOCK_ORDER = (
    "beacon",  # opens a key generation with the weights the last tally set
    "race",  # binds the cycle's seeds to fresh beacon rounds before the block's beacon transaction records one
    "verification",  # keeps the weights of a cycle that starts here (the last tally set them)
    "tokenomics",  # a new day's top-up and a cycle's provider reward: held in the cycle verification just opened
)
END_BLOCK_ORDER = (
    "pricing",  # at a cycle's end, the next cycle's price by the ending cycle's weights: before the tally replaces them
    "race",  # tallies the cycle: next cycle's weights, and power changes queued in validators
    "beacon",  # finishes a key generation and a commit-reveal
    "inference",  # routes requests whose round arrived, refunds expired ones; reads nothing the tally writes
    "verification",  # closes undecided disputes, then settles the cycle whose checks and disputes all closed
    "dummy",  # prunes expired commitments and old claims; reads nothing the others write here
    "finetune",  # draws providers from beacon rounds this block recorded, refunds expired jobs
    "training",  # round deadlines, audits from beacon rounds this block recorded, draws by the weights the tally set
    "gov",  # last: a passed proposal's changes apply from the next block, after every hook of this one ran
)
"""After the end-block hooks, the power changes queued in `validators` go to the engine."""


class VoteExtender(Protocol):
    """A validator's beacon agent: what it adds to its precommit at a height (off-chain; holds secrets)."""

    def extension(self, app: App, height: int, block: beacon.BeaconBlock | None) -> bytes: ...


class GenesisError(ValueError):
    """The genesis app_state cannot be loaded; the message says which part is wrong."""


class ChainInfo(ModuleKeeper):
    """App-level state: the chain id, written once at genesis."""

    name = "app"
    chain_id = Item(b"chain_id", TEXT, "")


def app_hash(prev: bytes, height: int, changes: dict[bytes, bytes | None]) -> bytes:
    """The app hash of a block given the previous one and the block's state changes."""
    return hashlib.sha256(changes_hash_input(prev, height, changes)).digest()


def _rejected(e: ChainError) -> TxResult:
    return TxResult(code=int(e.code), log=e.message, codespace="racenet")


def _json_bytes(value: Any) -> bytes:
    """Deterministic JSON bytes for query answers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class App:
    """racenet's ABCI application: modules, store, and the block lifecycle."""

    def __init__(
        self, db_path: Path | str, check_invariants: bool = False, extender: VoteExtender | None = None
    ) -> None:
        self.store = CommittedStore(Path(db_path))
        self.check_every_block = check_invariants
        self.extender = extender
        self.bank = bank.BankModule(bank.Keeper())
        self.auth = auth.AuthModule(auth.Keeper(self.bank.keeper))
        self.validators = validators.ValidatorsModule(validators.Keeper())
        self.race = race.RaceModule(race.Keeper(self.validators.keeper))
        self.beacon = beacon.BeaconModule(beacon.Keeper(self.race.keeper))
        self.race.keeper.use_beacon(self.beacon.keeper)
        self.inference = inference.InferenceModule(
            inference.Keeper(self.bank.keeper, self.race.keeper, self.beacon.keeper)
        )
        self.verification = verification.VerificationModule(
            verification.Keeper(self.bank.keeper, self.race.keeper, self.beacon.keeper)
        )
        self.inference.keeper.use_hooks(self.verification.keeper)
        self.verification.keeper.use_rewards(self.inference.keeper)
        self.pricing = pricing.PricingModule(pricing.Keeper(self.race.keeper, self.inference.keeper))
        self.inference.keeper.use_prices(self.pricing.keeper)
        self.dummy = dummy.DummyModule(
            dummy.Keeper(
                self.bank.keeper, self.race.keeper, self.beacon.keeper, self.inference.keeper, self.verification.keeper
            )
        )
        self.pool = pool.PoolModule(pool.Keeper(self.bank.keeper, self.race.keeper))
        self.tokenomics = tokenomics.TokenomicsModule(tokenomics.Keeper(self.bank.keeper, self.race.keeper))
        self.tokenomics.keeper.use_rewards(self.verification.keeper)
        self.verification.keeper.use_issuer(self.tokenomics.keeper)
        self.gov = gov.GovModule(gov.Keeper(self.bank.keeper, self.race.keeper))
        self.gov.keeper.use_training_fund(self.tokenomics.keeper)
        self.training = training.TrainingModule(training.Keeper(self.bank.keeper, self.race.keeper, self.beacon.keeper))
        self.training.keeper.use_penalties(self.verification.keeper)
        self.finetune = finetune.FinetuneModule(
            finetune.Keeper(self.bank.keeper, self.beacon.keeper, self.inference.keeper)
        )
        self.info_keeper = ChainInfo()
        self.modules: dict[str, Module[Any, Any]] = {
            m.name: m
            for m in (
                self.auth,
                self.bank,
                self.validators,
                self.race,
                self.beacon,
                self.inference,
                self.pricing,
                self.verification,
                self.dummy,
                self.tokenomics,
                self.pool,
                self.gov,
                self.training,
                self.finetune,
            )
        }
        self.registry: dict[str, type[Msg]] = {m.TYPE: m for mod in self.modules.values() for m in mod.messages()}
        self.routes: dict[str, Module[Any, Any]] = {
            m.TYPE: mod for mod in self.modules.values() for m in mod.messages()
        }
        self.gov.keeper.use_router(gov.MsgRouter(self.registry, self.routes))
        self.query_routes: dict[str, tuple[Module[Any, Any] | None, QuerySpec[Any, Any]]] = {
            spec.path: (mod, spec) for mod in self.modules.values() for spec in mod.queries
        }
        self.query_routes[EXPORT.path] = (None, EXPORT)
        self.verified_cache = VerifiedCache(VERIFIED_CACHE_BYTES)
        self.height, self.app_hash = self.store.last_commit()
        self.genesis: Branch | None = None
        self.pending: tuple[Branch, int] | None = None
        self.check_state = Branch(self.store)
        self.last_time = 0
        self.chain_id = self.info_keeper.chain_id.get(Context(store=self.store, block=BlockEnv("", self.height, 0)))

    def info(self) -> InfoResult:
        """Last committed height and app hash, for the engine's handshake."""
        return InfoResult(self.height, self.app_hash, __version__)

    def init_chain(self, req: InitChainRequest) -> InitChainResult:
        """Load genesis state into a branch that the first block's commit persists."""
        state = self._parse_app_state(req.app_state)
        if not state.race.start:  # the first cycle starts once the genesis group can sign its seed
            bootstrap = req.initial_height + state.beacon.params.dkg_blocks + 3
            state = dataclasses.replace(state, race=dataclasses.replace(state.race, start=bootstrap))
        branch = Branch(self.store)
        ctx = Context(store=branch, block=BlockEnv(req.chain_id, req.initial_height - 1, req.time))
        self.info_keeper.chain_id.set(ctx, req.chain_id)
        for name in INIT_GENESIS_ORDER:
            try:
                self.modules[name].init_genesis(ctx, getattr(state, name))
            except (ValueError, TypeError, KeyError, ChainError) as e:
                raise GenesisError(f"genesis app_state.{name}: {e}") from e
        validator_set = self._genesis_validators(ctx, req.validators)
        self.genesis = branch
        self.chain_id = req.chain_id
        self.app_hash = app_hash(b"", req.initial_height - 1, branch.changes)
        self.check_state = Branch(branch)
        return InitChainResult(self.app_hash, validator_set)

    def _genesis_validators(self, ctx: Context, offered: tuple[ValidatorUpdate, ...]) -> tuple[ValidatorUpdate, ...]:
        """The engine's genesis validators, unless app_state names its own (then returned to it)."""
        own = self.validators.keeper.validator_set(ctx)
        if own:
            return tuple(own)
        for v in offered:
            try:
                self.validators.keeper.set_genesis_power(ctx, v.pub_key, v.power)
            except ValueError as e:
                raise GenesisError(f"genesis validator {v.pub_key.hex()}: {e}") from e
        return ()

    def _parse_app_state(self, raw: bytes) -> AppState:
        try:
            doc = json.loads(raw or b"{}")
        except ValueError as e:
            raise GenesisError(f"genesis app_state is not JSON: {e}") from e
        if not isinstance(doc, dict):
            raise GenesisError("genesis app_state must be a JSON object")
        unknown = set(doc) - set(self.modules)
        if unknown:
            raise GenesisError(f"genesis app_state has unknown module(s): {', '.join(sorted(unknown))}")
        try:
            state = from_json(AppState, doc)
            state.validate()
        except ValueError as e:
            raise GenesisError(f"genesis app_state.{e}") from e
        return state

    def check_tx(self, tx: bytes, recheck: bool = False) -> TxResult:
        """Admit a transaction to the mempool if it would pass against the pending state.

        A recheck (CometBFT re-runs the mempool after each block) runs only the ante: a transaction whose
        message a block just made fail stays, is included and fails there, paying its fee and using its
        sequence. Evicting it would strand every later transaction of its sender behind the gap.
        """
        env = BlockEnv(self.chain_id, self.height + 1, self.last_time, self.app_hash)
        if recheck:
            branch = Branch(self.check_state)
            try:
                self._verified(Context(store=branch, block=env), tx)
            except ChainError as e:
                return _rejected(e)
            except Exception:
                log.exception("the ante checks raised an unexpected error on recheck; rejected")
                return _rejected(ChainError(Code.INTERNAL, "internal error"))
            branch.write()
            return TxResult()
        return self._deliver(self.check_state, env, tx, in_block=False)

    def prepare_proposal(
        self, req: BlockRequest, max_tx_bytes: int, last_commit: ExtendedCommit = NO_COMMIT
    ) -> tuple[bytes, ...]:
        """Choose the block's transactions: first the beacon transaction built from the last commit's vote
        extensions, then those that pass the ante checks in order, all within `max_tx_bytes`."""
        branch, env = self._proposal_state(req)
        chosen: list[bytes] = []
        size = 0
        beacon_tx = self._beacon_tx(Context(store=branch, block=env), last_commit)
        if beacon_tx and len(beacon_tx) <= max_tx_bytes:
            chosen.append(beacon_tx)
            size += len(beacon_tx)
        for tx in req.txs:
            if tx.startswith(BEACON_TX_PREFIX):
                continue
            if size + len(tx) > max_tx_bytes:
                break
            if self._passes_ante(branch, env, tx):
                chosen.append(tx)
                size += len(tx)
        return tuple(chosen)

    def process_proposal(self, req: BlockRequest) -> bool:
        """Accept a proposal only if every transaction decodes and passes the ante checks in order.

        So a proposer cannot fill a block with transactions nobody signed or pays for.
        """
        branch, env = self._proposal_state(req)
        txs = req.txs
        if txs and txs[0].startswith(BEACON_TX_PREFIX):
            block = parse_beacon_tx(txs[0])
            if block is None or self.beacon.keeper.block_fault(Context(store=branch, block=env), block):
                return False
            txs = txs[1:]
        return all(self._passes_ante(branch, env, tx) for tx in txs)

    def _beacon_tx(self, ctx: Context, last_commit: ExtendedCommit) -> bytes:
        """The beacon transaction for a proposal ('' when the last commit carried no extension)."""
        keys = {hashlib.sha256(k).digest()[:20]: k for k in self.race.keeper.node_keys(ctx)}
        votes = [
            SignedExtension(keys[v.validator_address], v.extension, v.signature)
            for v in last_commit.votes
            if v.validator_address in keys and v.signature
        ]
        if not votes:
            return b""
        try:
            block = self.beacon.keeper.propose(ctx, last_commit.round, votes)
        except Exception:  # a bug must not stop this node from proposing: it proposes without the beacon
            log.exception("building the beacon transaction failed; proposing without it")
            return b""
        return BEACON_TX_PREFIX + encode(block)

    def extend_vote(self, height: int, txs: tuple[bytes, ...]) -> bytes:
        """This validator's vote extension for the block at `height` (its beacon agent's messages)."""
        if self.extender is None:
            return b""
        block = parse_beacon_tx(txs[0]) if txs else None
        try:
            return self.extender.extension(self, height, block)
        except Exception:  # an agent bug costs this validator's contribution, never its vote
            log.exception("the beacon agent failed to extend the vote at height %d", height)
            return b""

    def verify_vote_extension(self, extension: bytes) -> bool:
        """Accept any extension that decodes (content is judged when a proposer includes it)."""
        if not extension:
            return True
        if len(extension) > beacon.types.MAX_EXTENSION_BYTES:
            return False
        try:
            decode(Extension, extension)
        except ValueError:
            return False
        return True

    def _proposal_state(self, req: BlockRequest) -> tuple[Branch, BlockEnv]:
        return Branch(self.genesis or self.store), BlockEnv(self.chain_id, req.height, req.time, self.app_hash)

    def _passes_ante(self, branch: Branch, env: BlockEnv, raw: bytes) -> bool:
        """Decode and charge one transaction in `branch` (its messages do not run)."""
        try:
            self._verified(Context(store=branch, block=env), raw)
        except Exception:  # a ChainError, or a bug (logged when the block runs it): either way not proposable
            return False
        return True

    def _verified(self, ante: Context, raw: bytes) -> tuple[VerifiedTx, bytes]:
        """Decode, check the signature, charge the fee and bump the sequence in `ante`; then decode the messages.

        Raises ChainError; `(tx, signer)` on success. Messages are decoded only once the
        signature is known good, and only then is the transaction cached.
        """
        params = self.auth.keeper.params.get(ante)
        cached = self.verified_cache.get(raw)
        if cached:  # decoded under the limits of its time: every node must judge it by today's
            check_size(raw, params.max_tx_bytes)
            check_message_count(cached.tx, params.max_msgs_per_tx)
        tx = cached.tx if cached else decode_envelope(raw, self.registry, params.max_tx_bytes, params.max_msgs_per_tx)
        work = [self.registry[m.type].WORK for m in tx.body.msgs]
        signer = self.auth.keeper.ante(ante, tx, len(raw), work, verified=cached is not None)
        if cached is None:
            cached = VerifiedTx(tx, decode_messages(tx, self.registry))
            self.verified_cache.put(raw, cached)
        return cached, signer

    def finalize_block(self, req: BlockRequest) -> FinalizeBlockResult:
        """Execute a decided block and compute its app hash (persisted by `commit`); never raises."""
        block = Branch(self.genesis or self.store)
        env = BlockEnv(self.chain_id, req.height, req.time, self.app_hash)
        ctx = Context(store=block, block=env)
        for name in BEGIN_BLOCK_ORDER:
            with isolated(ctx, name, "begin_block") as hook:
                self.modules[name].begin_block(hook)
        results = tuple(self._deliver_in_block(ctx, block, env, tx, i) for i, tx in enumerate(req.txs))
        for name in END_BLOCK_ORDER:
            with isolated(ctx, name, "end_block") as hook:
                self.modules[name].end_block(hook)
        updates: list[ValidatorUpdate] = []
        with isolated(ctx, self.validators.name, "validator updates") as hook:
            updates = self.validators.keeper.take_pending(hook)
        self.app_hash = app_hash(self.app_hash, req.height, block.changes)
        self.pending = (block, req.height)
        self.last_time = req.time
        return FinalizeBlockResult(results, self.app_hash, tuple(updates), tuple(ctx.events))

    def _deliver_in_block(self, ctx: Context, block: Branch, env: BlockEnv, raw: bytes, position: int) -> TxResult:
        """A block's transaction: the beacon transaction at its head runs in the beacon module, any other normally."""
        if position == 0 and raw.startswith(BEACON_TX_PREFIX):
            with isolated(ctx, self.beacon.name, "beacon transaction") as hook:
                self.beacon.keeper.apply_block(hook, raw)
            return TxResult()
        return self._deliver(block, env, raw)

    def _deliver(self, parent: KVStore, env: BlockEnv, raw: bytes, *, in_block: bool = True) -> TxResult:
        """Run one transaction: ante checks and charges, then its messages, each stage in its own branch.

        A rejected ante changes nothing. A message that fails undoes every message, and in a block
        keeps the ante's fee and sequence (so the failed transaction is paid for and cannot be
        replayed); in CheckTx it keeps nothing, and the transaction stays out of the mempool.
        """
        ante_branch = Branch(parent)
        ante = Context(store=ante_branch, block=env)
        try:
            verified, signer = self._verified(ante, raw)
        except ChainError as e:
            return _rejected(e)
        except Exception:
            log.exception("decoding or the ante checks raised an unexpected error; rejected")
            return _rejected(ChainError(Code.INTERNAL, "internal error"))
        msgs_branch = Branch(ante_branch)
        ctx = TxContext(store=msgs_branch, block=env, tx=TxEnv(signer, verified.tx.pub_key), events=ante.events)
        try:
            data = b"".join(self.routes[msg.TYPE].deliver(ctx, msg) for msg in verified.msgs)
        except Exception as e:
            if not isinstance(e, ChainError):
                log.exception("transaction raised an unexpected error; rejected")
                e = ChainError(Code.INTERNAL, "internal error")
            if in_block:
                ante_branch.write()
            return _rejected(e)
        msgs_branch.write()
        ante_branch.write()
        return TxResult(data=data, events=tuple(ctx.events))

    def commit(self) -> int:
        """Persist the finalized block atomically; return the retain height (0: keep all)."""
        if self.pending is None:
            raise RuntimeError("commit without finalize_block")
        block, height = self.pending
        changes = block.changes
        if self.genesis is not None:
            changes = {**self.genesis.changes, **changes}
        self.store.apply(changes, height, self.app_hash)
        self.height, self.genesis, self.pending = height, None, None
        if self.check_every_block:
            self.check_invariants()
        self.check_state = Branch(self.store)
        return 0

    def read_context(self) -> Context:
        """A throwaway context over the latest state, for checks on the consensus thread (queries use `query`)."""
        return Context(
            store=Branch(self.genesis or self.store), block=BlockEnv(self.chain_id, self.height, self.last_time)
        )

    def query(self, path: str, data: bytes, height: int = 0) -> QueryResult:
        """Answer a query path (`<module>/<name>`) from committed state as the JSON of its response type.

        Safe on any thread while blocks execute (review finding M10): it reads one snapshot of
        the committed store through the store's read-only connection, never the consensus
        thread's branches, so a slow query (`app/export`) holds up no block and a commit
        cannot tear its view. Before the first commit it answers the genesis state, at height 0.
        """
        genesis = self._genesis_changes()  # before the snapshot: see _query_context
        with self.store.reader().snapshot() as committed:
            ctx = self._query_context(committed, committed.height, genesis)
            if ctx is None:
                reason = "no committed state to query yet (the first block is being committed); retry"
                return QueryResult(code=int(Code.INVALID_QUERY), log=reason)
            return self._answer(ctx, path, data, height)

    def _genesis_changes(self) -> dict[bytes, bytes | None] | None:
        """A copy of the genesis branch's writes if it is certainly the genesis state alone, else None.

        May run on another thread than the consensus one. Only `commit` changes the genesis
        branch (it merges the first block into it), and only while a block is pending; it clears
        `genesis` before `pending`. So a copy taken with no block pending before and after it,
        and the same genesis branch after, holds no block's writes. (CPython's GIL makes the
        dict copy and each attribute read atomic.)
        """
        genesis = self.genesis
        if genesis is None or self.pending is not None:
            return None
        changes = dict(genesis.changes)
        if self.pending is not None or self.genesis is not genesis:
            return None
        return changes

    def _query_context(
        self, committed: KVStore, committed_height: int, genesis: dict[bytes, bytes | None] | None
    ) -> Context | None:
        """A context over a committed snapshot, or over the genesis state while nothing is committed.

        `genesis` was copied before the snapshot was taken, so if the snapshot has no block the
        copy is the state it lacks; None if there is none (no InitChain yet, or the first block
        is being committed). A query has no block time (committed state does not record one).
        """
        if committed_height == 0 and genesis is None:
            return None
        store = Branch(committed, genesis if committed_height == 0 else None)
        chain_id = self.info_keeper.chain_id.get(Context(store=store, block=BlockEnv("", committed_height, 0)))
        return Context(store=store, block=BlockEnv(chain_id, committed_height, 0))

    def _answer(self, ctx: Context, path: str, data: bytes, height: int) -> QueryResult:
        """Answer one query against `ctx`, whose block height is the state's committed height."""
        at = ctx.block.height
        if height not in (0, at):
            return QueryResult(code=int(Code.INVALID_QUERY), log="only the latest height can be queried")
        route = self.query_routes.get(path.strip("/"))
        try:
            if route is None:
                raise ChainError(Code.UNKNOWN_QUERY, f"unknown query path {path!r}")
            module, spec = route
            value = self.export_genesis(ctx) if module is None else module.answer(ctx, spec, data)
        except ChainError as e:
            return QueryResult(code=int(e.code), log=e.message, height=at)
        except (ValueError, UnicodeDecodeError) as e:
            return QueryResult(code=int(Code.INVALID_QUERY), log=str(e), height=at)
        return QueryResult(value=_json_bytes(to_json(value, spec.response)), height=at)

    def export_genesis(self, ctx: Context | None = None) -> AppState:
        """The state of `ctx` (default: `read_context()`) as a genesis `app_state` that init_chain accepts."""
        if ctx is None:
            ctx = self.read_context()
        return AppState(**{name: self.modules[name].export_genesis(ctx) for name in INIT_GENESIS_ORDER})

    def check_invariants(self) -> None:
        """Assert every module's invariants against committed state (tests run them after each block)."""
        ctx = self.read_context()
        for name in INIT_GENESIS_ORDER:
            for invariant, check in self.modules[name].invariants().items():
                try:
                    check(ctx)
                except InvariantBroken as e:
                    raise InvariantBroken(f"{name}/{invariant} at height {self.height}: {e}") from e

    def close(self) -> None:
        """Release the store."""
        self.store.close()
