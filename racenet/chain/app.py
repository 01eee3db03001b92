"""The racenet state machine behind an ABCI-2.0-shaped interface.

Deterministic by construction: integers only, block time as the only clock, no
randomness, no I/O but the store. Each block runs in a branch of the committed
state; `finalize_block` computes the app hash, `commit` persists it atomically.
Modules are wired here in an explicit order (`INIT_GENESIS_ORDER`, `BEGIN_BLOCK_ORDER`,
`END_BLOCK_ORDER`). No exception leaves `finalize_block`: a rejected transaction changes
nothing, and a hook that fails changes nothing and leaves a `hook_failed` event.

App hash: SHA-256 over (previous app hash, height, the block's sorted key changes),
so equal histories give equal hashes on every node without a full-state tree.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from racenet import __version__
from racenet.chain.app_state import EXPORT, AppState
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
from racenet.chain.modules import auth, bank, inference, race, validators
from racenet.chain.query import QuerySpec
from racenet.chain.store import Branch, CommittedStore, KVStore, changes_hash_input
from racenet.chain.tx import DecodedTx, decode_tx
from racenet.chain.types import (
    BlockRequest,
    FinalizeBlockResult,
    InfoResult,
    InitChainRequest,
    InitChainResult,
    QueryResult,
    TxResult,
    ValidatorUpdate,
)

log = logging.getLogger(__name__)

DECODE_CACHE_SIZE = 20_000

INIT_GENESIS_ORDER = (
    "auth",
    "bank",  # mints every genesis balance and escrow before another module could move one
    "validators",
    "race",  # registers the genesis nodes: inference accepts only registered Race nodes as servers
    "inference",
)
BEGIN_BLOCK_ORDER = ("race",)  # fixes the cycle's seeds before the block's transactions read them
END_BLOCK_ORDER = (
    "race",  # tallies the cycle: next cycle's weights, and power changes queued in validators
    "inference",  # refunds expired requests; reads nothing the tally writes
)
"""After the end-block hooks, the power changes queued in `validators` go to the engine."""


class GenesisError(ValueError):
    """The genesis app_state cannot be loaded; the message says which part is wrong."""


class ChainInfo(ModuleKeeper):
    """App-level state: the chain id, written once at genesis."""

    name = "app"
    chain_id = Item(b"chain_id", TEXT, "")


def app_hash(prev: bytes, height: int, changes: dict[bytes, bytes | None]) -> bytes:
    """The app hash of a block given the previous one and the block's state changes."""
    return hashlib.sha256(changes_hash_input(prev, height, changes)).digest()


def _json_bytes(value: Any) -> bytes:
    """Deterministic JSON bytes for query answers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class App:
    """racenet's ABCI application: modules, store, and the block lifecycle."""

    def __init__(self, db_path: Path | str, check_invariants: bool = False) -> None:
        self.store = CommittedStore(Path(db_path))
        self.check_every_block = check_invariants
        self.bank = bank.BankModule(bank.Keeper())
        self.auth = auth.AuthModule(auth.Keeper(self.bank.keeper))
        self.validators = validators.ValidatorsModule(validators.Keeper())
        self.race = race.RaceModule(race.Keeper(self.validators.keeper))
        self.inference = inference.InferenceModule(inference.Keeper(self.bank.keeper, self.race.keeper))
        self.info_keeper = ChainInfo()
        self.modules: dict[str, Module[Any, Any]] = {
            m.name: m for m in (self.auth, self.bank, self.validators, self.race, self.inference)
        }
        self.registry: dict[str, type[Msg]] = {m.TYPE: m for mod in self.modules.values() for m in mod.messages()}
        self.routes: dict[str, Module[Any, Any]] = {
            m.TYPE: mod for mod in self.modules.values() for m in mod.messages()
        }
        self.query_routes: dict[str, tuple[Module[Any, Any] | None, QuerySpec[Any, Any]]] = {
            spec.path: (mod, spec) for mod in self.modules.values() for spec in mod.queries
        }
        self.query_routes[EXPORT.path] = (None, EXPORT)
        self._decode = functools.lru_cache(maxsize=DECODE_CACHE_SIZE)(self._decode_uncached)
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

    def check_tx(self, tx: bytes) -> TxResult:
        """Admit a transaction to the mempool if it would pass against the pending state."""
        env = BlockEnv(self.chain_id, self.height + 1, self.last_time, self.app_hash)
        return self._deliver(self.check_state, env, tx)

    def prepare_proposal(self, req: BlockRequest, max_tx_bytes: int) -> tuple[bytes, ...]:
        """Choose the block's transactions: well-formed ones, in order, within `max_tx_bytes`."""
        chosen: list[bytes] = []
        size = 0
        for tx in req.txs:
            if size + len(tx) > max_tx_bytes:
                break
            if self._is_well_formed(tx):
                chosen.append(tx)
                size += len(tx)
        return tuple(chosen)

    def process_proposal(self, req: BlockRequest) -> bool:
        """Accept a proposal only if every transaction in it decodes."""
        return all(self._is_well_formed(tx) for tx in req.txs)

    def _is_well_formed(self, tx: bytes) -> bool:
        try:
            self._decode(tx, self.auth.keeper.params.get(self.read_context()).max_tx_bytes)
        except ChainError:
            return False
        return True

    def _decode_uncached(self, tx: bytes, max_tx_bytes: int) -> DecodedTx:
        """Decode a transaction (memoised: mempool, proposal and block see the same bytes)."""
        return decode_tx(tx, self.registry, max_tx_bytes)

    def finalize_block(self, req: BlockRequest) -> FinalizeBlockResult:
        """Execute a decided block and compute its app hash (persisted by `commit`); never raises."""
        block = Branch(self.genesis or self.store)
        env = BlockEnv(self.chain_id, req.height, req.time, self.app_hash)
        ctx = Context(store=block, block=env)
        for name in BEGIN_BLOCK_ORDER:
            with isolated(ctx, name, "begin_block") as hook:
                self.modules[name].begin_block(hook)
        results = tuple(self._deliver(block, env, tx) for tx in req.txs)
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

    def _deliver(self, parent: KVStore, env: BlockEnv, raw: bytes) -> TxResult:
        """Run one transaction in its own branch; on any rejection nothing is written."""
        branch = Branch(parent)
        ante = Context(store=branch, block=env)
        try:
            dtx = self._decode(raw, self.auth.keeper.params.get(ante).max_tx_bytes)
            signer = self.auth.keeper.ante(ante, dtx)
            ctx = TxContext(store=branch, block=env, tx=TxEnv(signer, dtx.tx.pub_key), events=ante.events)
            data = b"".join(self.routes[msg.TYPE].deliver(ctx, msg) for msg in dtx.msgs)
        except ChainError as e:
            return TxResult(code=int(e.code), log=e.message, codespace="racenet")
        except Exception:
            log.exception("transaction raised an unexpected error; rejected")
            return TxResult(code=int(Code.INTERNAL), log="internal error", codespace="racenet")
        branch.write()
        return TxResult(data=data, events=tuple(ctx.events))

    def commit(self) -> int:
        """Persist the finalized block atomically; return the retain height (0: keep all)."""
        if self.pending is None:
            raise RuntimeError("commit without finalize_block")
        block, height = self.pending
        changes = block.changes
        if self.genesis is not None:
            self.genesis.changes.update(changes)
            changes = self.genesis.changes
        self.store.apply(changes, height, self.app_hash)
        self.height, self.genesis, self.pending = height, None, None
        if self.check_every_block:
            self.check_invariants()
        self.check_state = Branch(self.store)
        return 0

    def read_context(self) -> Context:
        """A throwaway context over the latest state, for queries and checks."""
        return Context(
            store=Branch(self.genesis or self.store), block=BlockEnv(self.chain_id, self.height, self.last_time)
        )

    def query(self, path: str, data: bytes, height: int = 0) -> QueryResult:
        """Answer a query path (`<module>/<name>`) from committed state as the JSON of its response type."""
        if height not in (0, self.height):
            return QueryResult(code=int(Code.INVALID_QUERY), log="only the latest height can be queried")
        route = self.query_routes.get(path.strip("/"))
        try:
            if route is None:
                raise ChainError(Code.UNKNOWN_QUERY, f"unknown query path {path!r}")
            module, spec = route
            value = self.export_genesis() if module is None else module.answer(self.read_context(), spec, data)
        except ChainError as e:
            return QueryResult(code=int(e.code), log=e.message, height=self.height)
        except (ValueError, UnicodeDecodeError) as e:
            return QueryResult(code=int(Code.INVALID_QUERY), log=str(e), height=self.height)
        return QueryResult(value=_json_bytes(to_json(value, spec.response)), height=self.height)

    def export_genesis(self) -> AppState:
        """The current state as a genesis `app_state` that init_chain accepts."""
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
