"""The shape every chain module has, after Cosmos SDK's `x/<module>`.

A module owns a name (its key prefix), a keeper that declares its state as typed collections
(`racenet.chain.collections`) and alone reads and writes it, a message → handler table, a
query table, a typed genesis state, per-block hooks and invariants. The App wires modules in
an explicit order (`racenet.chain.app`).

Handlers run with a `TxContext` (the block's facts plus the transaction's signer); hooks and
queries with a plain `Context`, which has no signer to read by mistake. A hook that works
through many items (expiring requests, a tally) runs each in `isolated(...)`, so one item's
failure changes nothing of that item, leaves a `hook_failed` event and never stops the block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from racenet.chain.errors import ChainError, Code
from racenet.chain.query import QuerySpec
from racenet.chain.store import Branch, KVStore
from racenet.chain.types import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockEnv:
    """The facts of the block being executed: the same for every transaction and hook in it."""

    chain_id: str
    height: int
    time: int
    last_app_hash: bytes = b""


@dataclass(frozen=True)
class TxEnv:
    """Who signed the transaction whose messages run: its account address and public key."""

    signer: bytes
    pub_key: bytes


@dataclass(kw_only=True)
class Context:
    """What a hook or query sees: a state branch, the block's facts and the events emitted so far."""

    store: KVStore
    block: BlockEnv
    events: list[Event] = field(default_factory=list)

    def emit(self, type_: str, **attributes: str) -> None:
        """Record an event for the engine to index."""
        self.events.append(Event(type_, tuple(attributes.items())))


@dataclass(kw_only=True)
class TxContext(Context):
    """What a message handler sees: a `Context` plus the transaction's signer."""

    tx: TxEnv


@contextmanager
def isolated(ctx: Context, module: str, item: str) -> Iterator[Context]:
    """Run one item of a hook in its own branch: if it fails it changes nothing and leaves an event."""
    branch = Branch(ctx.store)
    inner = Context(store=branch, block=ctx.block)
    try:
        yield inner
    except Exception as e:
        reason = e.message if isinstance(e, ChainError) else f"{type(e).__name__}: {e}"
        log.error("%s hook: %s failed at height %d: %s", module, item, ctx.block.height, reason, exc_info=True)
        ctx.emit("hook_failed", module=module, item=item, error=reason)
        return
    branch.write()
    ctx.events.extend(inner.events)


class Msg:
    """Base of every message dataclass: `TYPE` is its wire name, e.g. `bank/Send`.

    `WORK` prices a message type's checks beyond its bytes (signature verifications, Merkle
    paths, draws), in the fee units of `bank.Params.fee_per_work`.
    """

    TYPE: ClassVar[str]
    WORK: ClassVar[int] = 0

    def validate(self) -> None:
        """Stateless checks; raise ChainError(INVALID_MESSAGE) on a bad field."""


class GenesisState:
    """Base of each module's typed genesis state (a dataclass whose defaults are an empty chain)."""

    def validate(self) -> None:
        """Stateless checks of the whole state; raise ValueError naming the bad field."""


class InvariantBroken(AssertionError):
    """A module invariant does not hold: the state is corrupt (tests fail; the chain must not go on)."""


class ModuleKeeper:
    """Base of every keeper: its `name` is the module's store prefix, to which its collections bind."""

    name: ClassVar[str]


KeeperT = TypeVar("KeeperT", bound=ModuleKeeper)
GenesisT = TypeVar("GenesisT", bound=GenesisState)
Handler = Callable[[Any, TxContext, Any], bytes | None]
QueryHandler = Callable[[Any, Context, Any], Any]
HandlerTable = Mapping[type[Msg], Handler]
"""message type → keeper method `(keeper, ctx, msg) -> result bytes or None`."""
QueryTable = Mapping[QuerySpec[Any, Any], QueryHandler]
"""query spec → keeper method `(keeper, ctx, arg) -> response`."""
Invariant = Callable[[Context], None]


class Module(Generic[KeeperT, GenesisT]):
    """A module's wiring: its keeper, message handlers, queries, genesis, hooks and invariants."""

    name: ClassVar[str]
    genesis_type: ClassVar[type[GenesisState]]
    handlers: ClassVar[HandlerTable] = {}
    queries: ClassVar[QueryTable] = {}

    def __init__(self, keeper: KeeperT) -> None:
        self.keeper = keeper

    @classmethod
    def messages(cls) -> tuple[type[Msg], ...]:
        """The message types this module handles (exactly the handler table's keys)."""
        return tuple(cls.handlers)

    def deliver(self, ctx: TxContext, msg: Msg) -> bytes:
        """Run a message's handler; its result bytes go into the transaction result."""
        handler = self.handlers.get(type(msg))
        if handler is None:
            raise ChainError(Code.UNKNOWN_MESSAGE, f"module {self.name} has no handler for {msg.TYPE}")
        return handler(self.keeper, ctx, msg) or b""

    def answer(self, ctx: Context, spec: QuerySpec[Any, Any], data: bytes) -> Any:
        """Answer one of this module's queries with its response value."""
        return self.queries[spec](self.keeper, ctx, spec.arg.decode(data))

    def init_genesis(self, ctx: Context, state: GenesisT) -> None:
        """Load this module's genesis state."""
        raise NotImplementedError

    def export_genesis(self, ctx: Context) -> GenesisT:
        """This module's state, such that init_genesis restores it."""
        raise NotImplementedError

    def begin_block(self, ctx: Context) -> None:
        """Hook run before a block's transactions."""

    def end_block(self, ctx: Context) -> None:
        """Hook run after a block's transactions."""

    def invariants(self) -> Mapping[str, Invariant]:
        """Named checks that hold after every block; each raises InvariantBroken if not."""
        return {}
