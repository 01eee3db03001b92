"""Queries run beside consensus, on committed state only (security review finding M10).

Public `abci_query` reaches `App.query`. If queries shared the App's consensus thread, a slow
one (`app/export` is O(state)) would hold up FinalizeBlock and Commit for as long as it ran.
These tests hold a query still in the middle of reading, by an event, and show that blocks
still finalize and commit through the ABCI server; and that every answer is the state of one
committed block, never a mix of two and never a finalized but uncommitted block.

No timing thresholds: the waits below are generous guards that only fire when a test fails.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from racenet.abci.pb.tendermint.abci import types_pb2 as pb
from racenet.abci.server import AbciServer, encode_frame, read_frame
from racenet.chain.app import App
from racenet.chain.app_state import EXPORT, AppState
from racenet.chain.errors import Code
from racenet.chain.modules import bank
from racenet.chain.modules.bank import MsgSend
from racenet.chain.types import BlockRequest, QueryResult
from tests.chain import GENESIS_TIME, INITIAL_BALANCE, Chain, genesis_for, key

GUARD_S = 60.0
"""Failure guard for every wait: far longer than any step takes when the code is right."""
ALICE, BOB = key(1), key(2)
QUERY_THREAD = "test-query"


def start_chain(tmp_path: Path) -> Chain:
    """A chain funding ALICE and BOB, with block 1 (empty) committed."""
    chain = Chain.start(tmp_path / "chain", genesis_for([ALICE, BOB]))
    chain.block()
    return chain


def transfer(chain: Chain, amount: int) -> bytes:
    """A signed ALICE → BOB transfer."""
    return chain.tx(ALICE, MsgSend(BOB.public_key.address, amount))


def exported(result: QueryResult) -> AppState:
    """The AppState an `app/export` answer carries."""
    assert result.code == 0, result.log
    state: AppState = EXPORT.decode(json.loads(result.value))
    return state


def balance(app: App) -> tuple[int, int]:
    """BOB's balance and the height it was read at, through the query path."""
    result = app.query(bank.BALANCE.path, bank.BALANCE.arg.encode(BOB.public_key.address))
    assert result.code == 0, result.log
    return bank.BALANCE.decode(json.loads(result.value)).amount, result.height


class Gate:
    """Holds a query inside its read: `entered` once it got there, it goes on after `release`."""

    def __init__(self) -> None:
        """A closed gate."""
        self.entered = threading.Event()
        self.release = threading.Event()

    def wait_here(self) -> None:
        """Called from the held query: report arrival, wait to be released."""
        self.entered.set()
        if not self.release.wait(GUARD_S):
            raise TimeoutError("the held query was never released")


@contextmanager
def hold_bank_export(app: App, only_on: Callable[[], bool] = lambda: True) -> Iterator[Gate]:
    """Make `app/export` stop between reading `auth` and reading `bank` (so a commit can fall between)."""
    gate = Gate()
    original = app.bank.export_genesis

    def held(ctx: Any) -> Any:
        if only_on():
            gate.wait_here()
        return original(ctx)

    app.bank.export_genesis = held  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        gate.release.set()
        app.bank.export_genesis = original  # type: ignore[method-assign]


# --- through the ABCI server, as CometBFT drives it -----------------------------------------


class Conn:
    """One raw ABCI connection, as CometBFT opens one per purpose (consensus, query, ...)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open connection."""
        self.reader = reader
        self.writer = writer

    async def send(self, request: pb.Request) -> None:
        """Write one request frame."""
        self.writer.write(encode_frame(request))
        await asyncio.wait_for(self.writer.drain(), GUARD_S)

    async def receive(self) -> pb.Response:
        """Read one response frame (the guard fires only if the server never answers)."""
        frame = await asyncio.wait_for(read_frame(self.reader), GUARD_S)
        assert frame is not None, "server closed the connection"
        return pb.Response.FromString(frame)

    async def call(self, request: pb.Request) -> pb.Response:
        """Send one request and read its response."""
        await self.send(request)
        return await self.receive()


def test_held_query_does_not_delay_finalize_block_or_commit(tmp_path: Path) -> None:
    """M10: with app/export stuck mid-read, FinalizeBlock and Commit still complete; the export is one commit."""
    chain = start_chain(tmp_path)
    app = chain.app
    at_height_1 = app.export_genesis()
    bob_before, _ = balance(app)
    tx = transfer(chain, 5)

    async def scenario(gate: Gate) -> None:
        server = AbciServer(app)
        listener = await server.start("127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        conns: list[Conn] = []

        async def connect() -> Conn:
            conns.append(Conn(*await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), GUARD_S)))
            return conns[-1]

        try:
            consensus, query = await connect(), await connect()
            await query.send(pb.Request(query=pb.RequestQuery(path=EXPORT.path)))
            answer = asyncio.create_task(query.receive())
            assert await asyncio.to_thread(gate.entered.wait, GUARD_S), "the export never started"

            # Were queries on the App thread, these would queue behind the held export until the guard.
            block = pb.RequestFinalizeBlock(txs=[tx], height=2, time={"seconds": GENESIS_TIME + 2})
            final = await consensus.call(pb.Request(finalize_block=block))
            assert [r.code for r in final.finalize_block.tx_results] == [0]
            commit = await consensus.call(pb.Request(commit=pb.RequestCommit()))
            assert commit.WhichOneof("value") == "commit"
            assert app.height == 2
            assert not answer.done(), "the export finished although it is held"

            gate.release.set()
            response = (await answer).query
            assert (response.code, response.height) == (0, 1), response.log
            state: AppState = EXPORT.decode(json.loads(response.value))
            assert state == at_height_1, "auth was read before block 2's commit and bank after: one snapshot"

            after = await query.call(pb.Request(query=pb.RequestQuery(path=EXPORT.path)))
            assert after.query.height == 2
        finally:
            gate.release.set()
            for conn in conns:
                conn.writer.close()
            listener.close()
            await asyncio.wait_for(listener.wait_closed(), GUARD_S)
            server.close()

    # Held on any thread but this one: on the App thread too, where the held export would stall consensus.
    with hold_bank_export(app, only_on=lambda: threading.current_thread() is not threading.main_thread()) as gate:
        asyncio.run(scenario(gate))
    assert balance(app) == (bob_before + 5, 2)
    app.close()


# --- App.query from another thread, no sockets ------------------------------------------------


def test_each_answer_is_one_committed_block_while_blocks_commit(tmp_path: Path) -> None:
    """M10: an export held across a commit answers the block it started on; the next sees the new one."""
    chain = start_chain(tmp_path)
    app = chain.app
    expected = {app.height: app.export_genesis()}
    answers: list[QueryResult] = []

    def query_export() -> None:
        answers.append(app.query(EXPORT.path, b""))

    with hold_bank_export(app, only_on=lambda: threading.current_thread().name == QUERY_THREAD) as gate:
        for amount in (1, 2, 3):
            gate.entered.clear()
            gate.release.clear()
            worker = threading.Thread(target=query_export, name=QUERY_THREAD)
            worker.start()
            assert gate.entered.wait(GUARD_S), "the export never started"
            chain.block(transfer(chain, amount))  # commits while the export is held mid-read
            expected[app.height] = app.export_genesis()
            gate.release.set()
            worker.join(GUARD_S)
            assert not worker.is_alive()

    assert [exported(a) for a in answers] == [expected[a.height] for a in answers]
    assert [a.height for a in answers] == [1, 2, 3], "each export answered the block it started on"
    assert all(expected[h] != expected[h + 1] for h in (1, 2, 3)), "each block changed the exported state"
    app.close()


def test_queries_never_see_an_uncommitted_block(tmp_path: Path) -> None:
    """A finalized block is invisible to queries until its commit, and so is block 1 over genesis."""
    chain = Chain.start(tmp_path / "chain", genesis_for([ALICE, BOB]))
    app = chain.app
    assert balance(app) == (INITIAL_BALANCE, 0), "before any commit, queries answer the genesis state"

    app.finalize_block(BlockRequest(1, GENESIS_TIME + 1, (transfer(chain, 7),)))
    pending = app.query(bank.BALANCE.path, bank.BALANCE.arg.encode(BOB.public_key.address))
    assert pending.code == Code.INVALID_QUERY and "retry" in pending.log, "block 1 is neither genesis nor committed"
    app.commit()
    assert balance(app) == (INITIAL_BALANCE + 7, 1)

    app.finalize_block(BlockRequest(2, GENESIS_TIME + 2, (transfer(chain, 11),)))
    assert balance(app) == (INITIAL_BALANCE + 7, 1), "block 2 is finalized, not committed"
    assert exported(app.query(EXPORT.path, b"")) == app.export_genesis(), "export shows committed state only"
    app.commit()
    assert balance(app) == (INITIAL_BALANCE + 18, 2)
    app.close()


def test_a_query_at_another_height_is_refused(tmp_path: Path) -> None:
    """Only the committed height (or 0, meaning latest) can be asked for."""
    chain = start_chain(tmp_path)
    refused = chain.app.query(bank.SUPPLY.path, b"", height=5)
    assert refused.code == Code.INVALID_QUERY
    assert chain.app.query(bank.SUPPLY.path, b"", height=1).code == 0
    chain.app.close()


def test_snapshot_is_read_only_and_ends_with_its_block(tmp_path: Path) -> None:
    """A reader's snapshot refuses writes and cannot be read once its transaction is over."""
    chain = start_chain(tmp_path)
    with chain.app.store.reader().snapshot() as snap:
        assert snap.height == 1
        assert list(snap.iterate(b"bank/")), "the snapshot sees the committed state"
        with pytest.raises(TypeError):
            snap.set(b"k", b"v")
    with pytest.raises(RuntimeError):
        snap.get(b"bank/")
    chain.app.close()
