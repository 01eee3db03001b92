"""ABCI 2.0 socket server that runs a racenet App behind CometBFT v0.38.

Wire format (CometBFT `abci/types/messages.go` → `libs/protoio`): every message is a protobuf
`tendermint.abci.Request` or `Response` prefixed with its byte length as an *unsigned* varint
(`binary.PutUvarint`, not zigzag). CometBFT opens four connections (consensus, mempool, query,
snapshot) and expects the responses on each in request order; it sends `Flush` when it wants
buffered responses written.

Each connection is served by its own task. Calls into the App (which is not thread-safe) go
through one single-worker thread pool: that serializes them in arrival order, keeps the event
loop free while the App computes or does disk I/O, and always runs the App on the same thread
(so thread-bound handles such as sqlite3 connections keep working if the App opens them lazily).

Queries are the exception (review finding M10): they run on a second single-worker pool, and
the App answers them from a read-only snapshot of committed state (`App.query`), so a slow
public `abci_query` (`app/export` is O(state)) cannot delay FinalizeBlock or Commit. Info
stays on the App thread: it is O(1), and it reports the height and app hash the consensus
calls left, which CometBFT's handshake compares with its own. CheckTx stays there too (it
runs against the App's mempool state).

Errors: an exception in a consensus-critical call is logged, answered with
`ResponseException` and the connection closed, so CometBFT halts instead of forking; a
CheckTx or Query exception becomes a non-zero code in an ordinary response.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from google.protobuf.message import Message

from racenet.chain.codec import encode_uvarint
from racenet.chain.types import (
    BlockRequest,
    Event,
    ExtendedCommit,
    ExtendedVote,
    FinalizeBlockResult,
    InfoResult,
    InitChainRequest,
    InitChainResult,
    QueryResult,
    TxResult,
    ValidatorUpdate,
)

try:
    from racenet.abci.pb.tendermint.abci import types_pb2 as pb
    from racenet.abci.pb.tendermint.crypto import keys_pb2
except ModuleNotFoundError as missing:  # pragma: no cover - depends on the build step
    raise ModuleNotFoundError("CometBFT protobuf modules are missing: run scripts/gen-proto.sh") from missing

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 128 * 1024 * 1024
"""Largest accepted message: above CometBFT's 100 MiB hard cap on block size."""
FRAME_TIMEOUT_S = 30.0
"""Time allowed for the rest of a frame once its first byte has arrived."""
WRITE_TIMEOUT_S = 30.0
"""Time allowed for CometBFT to accept a response before the connection is dropped."""
CLOSE_TIMEOUT_S = 5.0
"""Time allowed for a closing connection to finish."""
ED25519_KEY_BYTES = 32
APP_ERROR_CODE = 1
"""Code of CheckTx/Query responses whose App call raised (codespace `ERROR_CODESPACE`)."""
ERROR_CODESPACE = "racenet.abci"
INFO_DATA = "racenet"

T = TypeVar("T")
Handler = Callable[[pb.Request], Awaitable[pb.Response]]


class AbciApp(Protocol):
    """The ABCI-shaped state machine the server drives (see `racenet.chain.app.App`)."""

    def info(self) -> InfoResult: ...

    def init_chain(self, req: InitChainRequest) -> InitChainResult: ...

    def check_tx(self, tx: bytes, recheck: bool = False) -> TxResult: ...

    def prepare_proposal(
        self, req: BlockRequest, max_tx_bytes: int, last_commit: ExtendedCommit = ...
    ) -> tuple[bytes, ...]: ...

    def process_proposal(self, req: BlockRequest) -> bool: ...

    def finalize_block(self, req: BlockRequest) -> FinalizeBlockResult: ...

    def commit(self) -> int: ...

    def extend_vote(self, height: int, txs: tuple[bytes, ...]) -> bytes: ...

    def verify_vote_extension(self, extension: bytes) -> bool: ...

    def query(self, path: str, data: bytes, height: int = 0) -> QueryResult:
        """Answer from committed state; called on its own thread, concurrently with the other methods."""
        ...


class FrameError(ValueError):
    """A malformed or oversized length prefix: the stream cannot be resynchronized."""


def encode_frame(message: Message) -> bytes:
    """Serialize a message with CometBFT's uvarint length prefix (the same LEB128 as Go's `binary.PutUvarint`)."""
    body = message.SerializeToString()
    return encode_uvarint(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """Read one length-prefixed frame body; None on a clean EOF between frames.

    Waiting for a frame's first byte has no deadline (an idle connection is normal); the
    rest of the frame must follow within FRAME_TIMEOUT_S. The StreamReader buffers partial
    frames until they are complete.
    """
    first = await reader.read(1)
    if not first:
        return None
    return await asyncio.wait_for(_read_frame_rest(reader, first[0]), FRAME_TIMEOUT_S)


async def _read_frame_rest(reader: asyncio.StreamReader, first_byte: int) -> bytes:
    """Finish decoding the uvarint length that starts with first_byte, then read the body."""
    length, shift, byte = 0, 0, first_byte
    while True:
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 64:
            raise FrameError("length prefix longer than 10 bytes")
        byte = (await reader.readexactly(1))[0]
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    return await reader.readexactly(length)


def to_pb_validator(update: ValidatorUpdate) -> pb.ValidatorUpdate:
    """Map our (raw ed25519 key, power) update to CometBFT's ValidatorUpdate."""
    if len(update.pub_key) != ED25519_KEY_BYTES:
        raise ValueError(f"validator key must be {ED25519_KEY_BYTES} raw ed25519 bytes")
    return pb.ValidatorUpdate(pub_key=keys_pb2.PublicKey(ed25519=update.pub_key), power=update.power)


def from_pb_validator(update: pb.ValidatorUpdate) -> ValidatorUpdate:
    """Map CometBFT's ValidatorUpdate to ours; racenet validators are ed25519 only."""
    if update.pub_key.WhichOneof("sum") != "ed25519":
        raise ValueError(f"unsupported validator key type {update.pub_key.WhichOneof('sum')}")
    return ValidatorUpdate(pub_key=update.pub_key.ed25519, power=update.power)


def to_pb_events(events: Iterable[Event]) -> list[pb.Event]:
    """Map events to ABCI events whose string attributes are all indexed."""
    return [
        pb.Event(
            type=event.type,
            attributes=[pb.EventAttribute(key=key, value=value, index=True) for key, value in event.attributes],
        )
        for event in events
    ]


def _tx_fields(result: TxResult) -> dict[str, Any]:
    """The fields ExecTxResult and ResponseCheckTx share."""
    return {
        "code": result.code,
        "data": result.data,
        "log": result.log,
        "events": to_pb_events(result.events),
        "codespace": result.codespace,
    }


def to_exec_tx_result(result: TxResult) -> pb.ExecTxResult:
    """Map one executed transaction's result to FinalizeBlock's ExecTxResult."""
    return pb.ExecTxResult(**_tx_fields(result))


def to_check_tx_response(result: TxResult) -> pb.ResponseCheckTx:
    """Map a mempool admission result to ResponseCheckTx."""
    return pb.ResponseCheckTx(**_tx_fields(result))


def to_query_response(result: QueryResult) -> pb.ResponseQuery:
    """Map a state query's answer to ResponseQuery."""
    return pb.ResponseQuery(
        code=result.code,
        log=result.log,
        value=result.value,
        height=result.height,
    )


def to_finalize_block_response(result: FinalizeBlockResult) -> pb.ResponseFinalizeBlock:
    """Map a decided block's outcome to ResponseFinalizeBlock."""
    return pb.ResponseFinalizeBlock(
        events=to_pb_events(result.events),
        tx_results=[to_exec_tx_result(tx) for tx in result.tx_results],
        validator_updates=[to_pb_validator(v) for v in result.validator_updates],
        app_hash=result.app_hash,
    )


def to_block_request(
    req: pb.RequestPrepareProposal | pb.RequestProcessProposal | pb.RequestFinalizeBlock,
) -> BlockRequest:
    """Map a proposal or decided block to BlockRequest (time in unix seconds)."""
    return BlockRequest(
        height=req.height,
        time=req.time.seconds,
        txs=tuple(req.txs),
        proposer=req.proposer_address,
        hash=b"" if isinstance(req, pb.RequestPrepareProposal) else req.hash,
    )


def to_extended_commit(commit: pb.ExtendedCommitInfo) -> ExtendedCommit:
    """The proposer's last commit with the vote extensions of the validators that sent one."""
    votes = tuple(
        ExtendedVote(v.validator.address, v.vote_extension, v.extension_signature)
        for v in commit.votes
        if v.extension_signature
    )
    return ExtendedCommit(commit.round, votes)


def to_init_chain_request(req: pb.RequestInitChain) -> InitChainRequest:
    """Map CometBFT's InitChain (genesis) to InitChainRequest."""
    return InitChainRequest(
        chain_id=req.chain_id,
        time=req.time.seconds,
        initial_height=req.initial_height,
        app_state=req.app_state_bytes,
        validators=tuple(from_pb_validator(v) for v in req.validators),
    )


def error_text(exc: BaseException) -> str:
    """A one-line description of an exception for a response log."""
    return f"{type(exc).__name__}: {exc}"


class AbciServer:
    """Serves one App to CometBFT's ABCI connections."""

    def __init__(self, app: AbciApp) -> None:
        """Bind the App, the single thread every App call but Query runs on, and the query thread."""
        self._app = app
        self._app_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abci-app")
        self._query_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abci-query")
        self._handlers: dict[str, Handler] = {
            "echo": self._echo,
            "flush": self._flush,
            "info": self._info,
            "init_chain": self._init_chain,
            "query": self._query,
            "check_tx": self._check_tx,
            "commit": self._commit,
            "list_snapshots": self._list_snapshots,
            "offer_snapshot": self._offer_snapshot,
            "load_snapshot_chunk": self._load_snapshot_chunk,
            "apply_snapshot_chunk": self._apply_snapshot_chunk,
            "prepare_proposal": self._prepare_proposal,
            "process_proposal": self._process_proposal,
            "extend_vote": self._extend_vote,
            "verify_vote_extension": self._verify_vote_extension,
            "finalize_block": self._finalize_block,
        }

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen on host:port (port 0 picks a free one) and serve each connection."""
        return await asyncio.start_server(self.handle_connection, host, port)

    def close(self) -> None:
        """Stop the App thread once its pending calls have finished; drop queued queries, finish a running one."""
        self._query_thread.shutdown(wait=True, cancel_futures=True)
        self._app_thread.shutdown(wait=True)

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one connection in order until EOF or a fatal error."""
        peer = writer.get_extra_info("peername")
        log.info("ABCI connection from %s", peer)
        try:
            while (frame := await read_frame(reader)) is not None:
                response = await self._respond(pb.Request.FromString(frame))
                writer.write(encode_frame(response))
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
                if response.WhichOneof("value") == "exception":
                    break
        except Exception:
            log.exception("ABCI connection from %s failed; closing it", peer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)
        log.info("ABCI connection from %s closed", peer)

    async def _respond(self, request: pb.Request) -> pb.Response:
        """Dispatch a request; a failure becomes ResponseException (CometBFT then halts)."""
        kind = request.WhichOneof("value")
        try:
            if kind is None or kind not in self._handlers:
                raise ValueError(f"unknown ABCI request {kind!r}")
            return await self._handlers[kind](request)
        except Exception as exc:
            log.exception("ABCI %s failed; answering with an exception", kind)
            return pb.Response(exception=pb.ResponseException(error=error_text(exc)))

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        """Run one App call on the App thread, after every call submitted before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._app_thread, functools.partial(fn, *args))

    async def _call_query(self, fn: Callable[..., T], *args: object) -> T:
        """Run one query on the query thread, never queued behind (or ahead of) a consensus call."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._query_thread, functools.partial(fn, *args))

    async def _echo(self, request: pb.Request) -> pb.Response:
        """Echo the message back (CometBFT's liveness probe)."""
        return pb.Response(echo=pb.ResponseEcho(message=request.echo.message))

    async def _flush(self, request: pb.Request) -> pb.Response:
        """Acknowledge a flush; responses are already written in order."""
        return pb.Response(flush=pb.ResponseFlush())

    async def _info(self, request: pb.Request) -> pb.Response:
        """Report the last committed height and app hash for CometBFT's handshake."""
        result: InfoResult = await self._call(self._app.info)
        return pb.Response(
            info=pb.ResponseInfo(
                data=INFO_DATA,
                version=result.version,
                app_version=result.app_version,
                last_block_height=result.last_block_height,
                last_block_app_hash=result.last_block_app_hash,
            )
        )

    async def _init_chain(self, request: pb.Request) -> pb.Response:
        """Load genesis; returned validators (if any) replace CometBFT's genesis set."""
        req = to_init_chain_request(request.init_chain)
        result: InitChainResult = await self._call(self._app.init_chain, req)
        return pb.Response(
            init_chain=pb.ResponseInitChain(
                app_hash=result.app_hash,
                validators=[to_pb_validator(v) for v in result.validators],
            )
        )

    async def _check_tx(self, request: pb.Request) -> pb.Response:
        """Admit or reject a mempool transaction; an App error rejects it with a code."""
        try:
            check = request.check_tx
            result: TxResult = await self._call(self._app.check_tx, check.tx, check.type == pb.RECHECK)
            return pb.Response(check_tx=to_check_tx_response(result))
        except Exception as exc:
            log.exception("CheckTx raised; rejecting the transaction")
            failed = TxResult(code=APP_ERROR_CODE, log=error_text(exc), codespace=ERROR_CODESPACE)
            return pb.Response(check_tx=to_check_tx_response(failed))

    async def _query(self, request: pb.Request) -> pb.Response:
        """Answer a state query on the query thread; an App error becomes a non-zero code."""
        q = request.query
        try:
            result: QueryResult = await self._call_query(self._app.query, q.path, q.data, q.height)
            return pb.Response(query=to_query_response(result))
        except Exception as exc:
            log.exception("Query %r raised", q.path)
            failed = pb.ResponseQuery(code=APP_ERROR_CODE, log=error_text(exc), codespace=ERROR_CODESPACE)
            return pb.Response(query=failed)

    async def _prepare_proposal(self, request: pb.Request) -> pb.Response:
        """Let the App choose the transactions of the block this node proposes."""
        req = request.prepare_proposal
        txs: tuple[bytes, ...] = await self._call(
            self._app.prepare_proposal,
            to_block_request(req),
            req.max_tx_bytes,
            to_extended_commit(req.local_last_commit),
        )
        return pb.Response(prepare_proposal=pb.ResponsePrepareProposal(txs=txs))

    async def _process_proposal(self, request: pb.Request) -> pb.Response:
        """Accept or reject another validator's proposed block."""
        block = to_block_request(request.process_proposal)
        accepted: bool = await self._call(self._app.process_proposal, block)
        status = pb.ResponseProcessProposal.ACCEPT if accepted else pb.ResponseProcessProposal.REJECT
        return pb.Response(process_proposal=pb.ResponseProcessProposal(status=status))

    async def _finalize_block(self, request: pb.Request) -> pb.Response:
        """Execute a decided block: tx results, validator power updates, app hash."""
        block = to_block_request(request.finalize_block)
        result: FinalizeBlockResult = await self._call(self._app.finalize_block, block)
        return pb.Response(finalize_block=to_finalize_block_response(result))

    async def _commit(self, request: pb.Request) -> pb.Response:
        """Persist the finalized state; tell CometBFT which heights it may prune."""
        retain_height: int = await self._call(self._app.commit)
        return pb.Response(commit=pb.ResponseCommit(retain_height=retain_height))

    async def _extend_vote(self, request: pb.Request) -> pb.Response:
        """This validator's beacon messages for the block it precommits."""
        req = request.extend_vote
        extension: bytes = await self._call(self._app.extend_vote, req.height, tuple(req.txs))
        return pb.Response(extend_vote=pb.ResponseExtendVote(vote_extension=extension))

    async def _verify_vote_extension(self, request: pb.Request) -> pb.Response:
        """Accept every extension that decodes; its content is judged when a proposer includes it."""
        accepted: bool = await self._call(self._app.verify_vote_extension, request.verify_vote_extension.vote_extension)
        status = pb.ResponseVerifyVoteExtension.ACCEPT if accepted else pb.ResponseVerifyVoteExtension.REJECT
        return pb.Response(verify_vote_extension=pb.ResponseVerifyVoteExtension(status=status))

    async def _list_snapshots(self, request: pb.Request) -> pb.Response:
        """racenet serves no state-sync snapshots."""
        return pb.Response(list_snapshots=pb.ResponseListSnapshots())

    async def _offer_snapshot(self, request: pb.Request) -> pb.Response:
        """Abort state sync: no offered snapshot can be restored."""
        result = pb.ResponseOfferSnapshot.ABORT
        return pb.Response(offer_snapshot=pb.ResponseOfferSnapshot(result=result))

    async def _load_snapshot_chunk(self, request: pb.Request) -> pb.Response:
        """No snapshots, so no chunks."""
        return pb.Response(load_snapshot_chunk=pb.ResponseLoadSnapshotChunk())

    async def _apply_snapshot_chunk(self, request: pb.Request) -> pb.Response:
        """Abort state sync (an empty response would be UNKNOWN, which CometBFT rejects)."""
        result = pb.ResponseApplySnapshotChunk.ABORT
        return pb.Response(apply_snapshot_chunk=pb.ResponseApplySnapshotChunk(result=result))


async def serve(app: AbciApp, host: str, port: int) -> None:
    """Serve app to CometBFT on host:port until cancelled."""
    server = AbciServer(app)
    try:
        listener = await server.start(host, port)
        log.info("ABCI server listening on %s:%d", host, port)
        async with listener:
            await listener.serve_forever()
    finally:
        server.close()


def parse_address(address: str) -> tuple[str, int]:
    """Split a CometBFT-style `tcp://host:port` proxy_app address."""
    parts = urlsplit(address)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise ValueError(f"expected tcp://host:port, got {address!r}")
    return parts.hostname, parts.port


def run(app: AbciApp, address: str) -> None:
    """Blocking entry point: serve app on a `tcp://host:port` address."""
    host, port = parse_address(address)
    asyncio.run(serve(app, host, port))
