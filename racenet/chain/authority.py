"""The governance authority: the module account in whose name passed proposals run their messages.

A message that changes what only the network as a whole may change (a module's params, the registered
models, a training-fund grant) is an `AuthorityMsg`. Its handler accepts it only from `GOV_AUTHORITY`,
an address no key owns, so the only way to send one is a proposal that passed a vote by Race weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, Msg, TxContext, TxEnv
from racenet.chain.store import Branch
from racenet.crypto.address import module_address

GOV_AUTHORITY = module_address("gov")
MAX_WINDOW_BLOCKS = 10_000_000
"""The longest window (in blocks) a param may set: heights plus windows stay far inside a u64."""


class AuthorityMsg(Msg):
    """A message only the governance authority may send: a proposal carries it, gov executes it."""


class ValidatedParams(Protocol):
    """A module's params: `validate()` raises ValueError naming a bad field."""

    def validate(self) -> None: ...


def require_authority(ctx: TxContext, action: str) -> None:
    """Raise ChainError(UNAUTHORIZED) unless the signer is the governance authority."""
    if ctx.tx.signer != GOV_AUTHORITY:
        raise ChainError(Code.UNAUTHORIZED, f"only governance may {action}: submit a proposal (racenet gov submit)")


@contextmanager
def as_authority(ctx: Context) -> Iterator[TxContext]:
    """A branch of `ctx` in which handlers run as the governance authority: written back (with its events) only
    if the block inside raises nothing; an exception leaves `ctx` unchanged and goes on to the caller."""
    branch = Branch(ctx.store)
    inner = TxContext(store=branch, block=ctx.block, tx=TxEnv(GOV_AUTHORITY, b""))
    yield inner
    branch.write()
    ctx.events.extend(inner.events)


def check_params(params: ValidatedParams) -> None:
    """Raise ChainError(INVALID_MESSAGE) if `params.validate()` finds a bad field."""
    try:
        params.validate()
    except ValueError as e:
        raise ChainError(Code.INVALID_MESSAGE, f"invalid params: {e}") from e
