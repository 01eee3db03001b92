"""The racenet state machine behind an ABCI-2.0-shaped interface.

Deterministic by construction: integers only, block time as the only clock, no
randomness, no I/O but the store. Each block runs in a branch of the committed
state; `finalize_block` computes the app hash, `commit` persists it atomically.

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
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, Module, Msg, json_bytes
from racenet.chain.modules.auth import AuthModule
from racenet.chain.modules.bank import BankModule
from racenet.chain.modules.inference import InferenceModule
from racenet.chain.modules.race import RaceModule
from racenet.chain.modules.validators import ValidatorsModule
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

CHAIN_ID_KEY = b"app/chain_id"
DECODE_CACHE_SIZE = 20_000


class GenesisError(ValueError):
    """The genesis app_state cannot be loaded; the message says which part is wrong."""


def app_hash(prev: bytes, height: int, changes: dict[bytes, bytes | None]) -> bytes:
    """The app hash of a block given the previous one and the block's state changes."""
    return hashlib.sha256(changes_hash_input(prev, height, changes)).digest()


class App:
    """racenet's ABCI application: modules, store, and the block lifecycle."""

    def __init__(self, db_path: Path | str, check_invariants: bool = False) -> None:
        self.store = CommittedStore(Path(db_path))
        self.check_every_block = check_invariants
        self.auth = AuthModule()
        self.bank = BankModule()
        self.validators = ValidatorsModule()
        self.race = RaceModule(self.validators.keeper)
        self.inference = InferenceModule(self.bank.keeper, self.race.keeper)
        self.modules: list[Module] = [self.auth, self.bank, self.race, self.inference, self.validators]
        self.registry: dict[str, type[Msg]] = {m.TYPE: m for mod in self.modules for m in mod.messages}
        self.handlers: dict[str, Module] = {m.TYPE: mod for mod in self.modules for m in mod.messages}
        self._decode = functools.lru_cache(maxsize=DECODE_CACHE_SIZE)(self._decode_uncached)
        self.height, self.app_hash = self.store.last_commit()
        self.genesis: Branch | None = None
        self.pending: tuple[Branch, int] | None = None
        self.check_state = Branch(self.store)
        self.last_time = 0
        self.chain_id = (self.store.get(CHAIN_ID_KEY) or b"").decode()

    def info(self) -> InfoResult:
        """Last committed height and app hash, for the engine's handshake."""
        return InfoResult(self.height, self.app_hash, __version__)

    def init_chain(self, req: InitChainRequest) -> InitChainResult:
        """Load genesis state into a branch that the first block's commit persists."""
        state = self._parse_app_state(req.app_state)
        branch = Branch(self.store)
        branch.set(CHAIN_ID_KEY, req.chain_id.encode())
        ctx = Context(branch, req.chain_id, req.initial_height - 1, req.time)
        for module in self.modules:
            try:
                module.init_genesis(ctx, state.get(module.name, {}))
            except (ValueError, TypeError, KeyError) as e:
                raise GenesisError(f"genesis app_state.{module.name}: {e}") from e
        validators = self._genesis_validators(ctx, req.validators)
        self.genesis = branch
        self.chain_id = req.chain_id
        self.app_hash = app_hash(b"", req.initial_height - 1, branch.changes)
        self.check_state = Branch(branch)
        return InitChainResult(self.app_hash, validators)

    def _genesis_validators(self, ctx: Context, offered: tuple[ValidatorUpdate, ...]) -> tuple[ValidatorUpdate, ...]:
        """The engine's genesis validators, unless app_state names its own (then returned to it)."""
        own = self.validators.keeper.powers(ctx)
        if own:
            return tuple(own)
        for v in offered:
            try:
                self.validators.keeper.set_genesis_power(ctx, v.pub_key, v.power)
            except ValueError as e:
                raise GenesisError(f"genesis validator {v.pub_key.hex()}: {e}") from e
        return ()

    def _parse_app_state(self, raw: bytes) -> dict[str, Any]:
        try:
            state = json.loads(raw or b"{}")
        except ValueError as e:
            raise GenesisError(f"genesis app_state is not JSON: {e}") from e
        if not isinstance(state, dict):
            raise GenesisError("genesis app_state must be a JSON object")
        unknown = set(state) - {m.name for m in self.modules}
        if unknown:
            raise GenesisError(f"genesis app_state has unknown module(s): {', '.join(sorted(unknown))}")
        return state

    def check_tx(self, tx: bytes) -> TxResult:
        """Admit a transaction to the mempool if it would pass against the pending state."""
        return self._deliver(self.check_state, self.height + 1, self.last_time, tx)

    def prepare_proposal(self, req: BlockRequest, max_tx_bytes: int) -> tuple[bytes, ...]:
        """Choose the block's transactions: well-formed ones, in order, within `max_tx_bytes`."""
        chosen: list[bytes] = []
        size = 0
        for tx in req.txs:
            if size + len(tx) > max_tx_bytes:
                break
            if self._decodes(tx):
                chosen.append(tx)
                size += len(tx)
        return tuple(chosen)

    def process_proposal(self, req: BlockRequest) -> bool:
        """Accept a proposal only if every transaction in it decodes."""
        return all(self._decodes(tx) for tx in req.txs)

    def _decodes(self, tx: bytes) -> bool:
        try:
            self._decode(tx, self.auth.keeper.params(self.read_context()).max_tx_bytes)
        except ChainError:
            return False
        return True

    def _decode_uncached(self, tx: bytes, max_tx_bytes: int) -> DecodedTx:
        """Decode a transaction (memoised: mempool, proposal and block see the same bytes)."""
        return decode_tx(tx, self.registry, max_tx_bytes)

    def finalize_block(self, req: BlockRequest) -> FinalizeBlockResult:
        """Execute a decided block and compute its app hash (persisted by `commit`)."""
        block = Branch(self.genesis or self.store)
        ctx = Context(block, self.chain_id, req.height, req.time, last_app_hash=self.app_hash)
        for module in self.modules:
            module.begin_block(ctx)
        results = tuple(self._deliver(block, req.height, req.time, tx) for tx in req.txs)
        updates: list[ValidatorUpdate] = []
        for module in self.modules:
            updates.extend(module.end_block(ctx))
        self.app_hash = app_hash(self.app_hash, req.height, block.changes)
        self.pending = (block, req.height)
        self.last_time = req.time
        return FinalizeBlockResult(results, self.app_hash, tuple(updates), tuple(ctx.events))

    def _deliver(self, parent: KVStore, height: int, time: int, raw: bytes) -> TxResult:
        """Run one transaction in its own branch; on any rejection nothing is written."""
        branch = Branch(parent)
        ctx = Context(branch, self.chain_id, height, time, last_app_hash=self.app_hash)
        try:
            dtx = self._decode(raw, self.auth.keeper.params(ctx).max_tx_bytes)
            ctx.signer = self.auth.keeper.ante(ctx, dtx, self.bank.keeper)
            ctx.signer_pub_key = dtx.tx.pub_key
            data = b"".join(self.handlers[msg.TYPE].handle(ctx, msg) for msg in dtx.msgs)
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
        return Context(Branch(self.genesis or self.store), self.chain_id, self.height, self.last_time)

    def query(self, path: str, data: bytes, height: int = 0) -> QueryResult:
        """Answer `<module>/<path>` from committed state as JSON bytes."""
        if height not in (0, self.height):
            return QueryResult(code=int(Code.INVALID_QUERY), log="only the latest height can be queried")
        module_name, _, sub = path.strip("/").partition("/")
        module = next((m for m in self.modules if m.name == module_name), None)
        try:
            if module_name == "app" and sub == "export":
                value: Any = self.export_genesis()
            elif module is None:
                raise ChainError(Code.UNKNOWN_QUERY, f"unknown query path {path!r}")
            else:
                value = module.query(self.read_context(), sub, data)
        except ChainError as e:
            return QueryResult(code=int(e.code), log=e.message, height=self.height)
        except (ValueError, UnicodeDecodeError) as e:
            return QueryResult(code=int(Code.INVALID_QUERY), log=str(e), height=self.height)
        return QueryResult(value=json_bytes(value), height=self.height)

    def export_genesis(self) -> dict[str, Any]:
        """The current state as a genesis `app_state` that init_chain accepts."""
        ctx = self.read_context()
        return {m.name: m.export_genesis(ctx) for m in self.modules}

    def check_invariants(self) -> None:
        """Assert every module invariant against committed state (tests run it each block)."""
        self.bank.keeper.check_supply(self.read_context())

    def close(self) -> None:
        """Release the store."""
        self.store.close()
