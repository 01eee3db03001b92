"""Wire compatibility of the ABCI server with CometBFT v0.38 (no CometBFT process needed).

The expected bytes below were worked out by hand from `proto/tendermint/abci/types.proto` of
CometBFT v0.38.26 (field numbers noted next to each tag) and its framing
(`libs/protoio`: unsigned varint length, then the message).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from racenet.abci.pb.tendermint.abci import types_pb2 as pb
from racenet.abci.pb.tendermint.crypto import keys_pb2
from racenet.abci.server import (
    APP_ERROR_CODE,
    ERROR_CODESPACE,
    MAX_FRAME_BYTES,
    AbciServer,
    encode_frame,
    from_pb_validator,
    parse_address,
    read_frame,
    to_block_request,
    to_finalize_block_response,
)
from racenet.chain.codec import encode_uvarint
from racenet.chain.types import (
    NO_COMMIT,
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

IO_TIMEOUT_S = 5.0
KEY = bytes(range(32))


# --- (a) field-by-field wire encodings ---------------------------------------------------


def test_uvarint_is_unsigned_not_zigzag() -> None:
    """Go's binary.PutUvarint: 300 -> ac 02 (zigzag would give d8 04)."""
    assert encode_uvarint(0) == b"\x00"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(300) == b"\xac\x02"


def test_echo_request_frame() -> None:
    """Request.echo = field 1; RequestEcho.message = field 1; 6-byte body, prefix 06."""
    frame = encode_frame(pb.Request(echo=pb.RequestEcho(message="hi")))
    assert frame == bytes.fromhex("06 0a04 0a02 6869")


def test_long_frame_has_two_byte_length() -> None:
    """A 206-byte Request is prefixed ce 01 (uvarint 206), not 9c 03 (zigzag)."""
    frame = encode_frame(pb.Request(echo=pb.RequestEcho(message="x" * 200)))
    assert frame[:2] == b"\xce\x01"
    assert frame[2:6] == bytes.fromhex("0acb010a")
    assert len(frame) == 2 + 206


def test_check_tx_request_bytes() -> None:
    """Request.check_tx = field 8 (tag 42); tx = field 1, type RECHECK = field 2 value 1."""
    req = pb.Request(check_tx=pb.RequestCheckTx(tx=b"\x01\x02\x03", type=pb.RECHECK))
    assert req.SerializeToString() == bytes.fromhex("4207 0a03010203 1001")


def test_finalize_block_response_with_validator_update() -> None:
    """Response.finalize_block = field 21 (tag aa 01); validator_updates = 3; app_hash = 5."""
    result = FinalizeBlockResult(
        tx_results=(),
        app_hash=b"\xab\xab",
        validator_updates=(ValidatorUpdate(pub_key=KEY, power=10),),
    )
    body = pb.Response(finalize_block=to_finalize_block_response(result)).SerializeToString()
    # PublicKey.ed25519 = field 1; ValidatorUpdate.pub_key = 1, power = 2.
    public_key = bytes.fromhex("0a20") + KEY
    validator = bytes.fromhex("0a22") + public_key + bytes.fromhex("100a")
    inner = bytes.fromhex("1a26") + validator + bytes.fromhex("2a02abab")
    assert body == bytes.fromhex("aa012c") + inner


def test_finalize_block_tx_result_event_is_indexed() -> None:
    """tx_results = field 2: ExecTxResult code = 1, events = 7; EventAttribute.index = 3."""
    result = FinalizeBlockResult(
        tx_results=(TxResult(code=5, events=(Event("t", (("k", "v"),)),)),),
        app_hash=b"",
    )
    body = to_finalize_block_response(result).SerializeToString()
    attribute = bytes.fromhex("0a016b 120176 1801")
    event = bytes.fromhex("0a0174 1208") + attribute
    assert body == bytes.fromhex("1211 0805 3a0d") + event


def test_finalize_block_request_decodes_to_block_request() -> None:
    """txs = 1, height = 5, time = 6 (its seconds = field 1), proposer_address = 8."""
    raw = bytes.fromhex("0a026162 2807 3206 0880e2cfaa06 42020102")
    block = to_block_request(pb.RequestFinalizeBlock.FromString(raw))
    assert block == BlockRequest(height=7, time=1_700_000_000, txs=(b"ab",), proposer=b"\x01\x02", hash=b"")


def test_init_chain_validator_must_be_ed25519() -> None:
    """CometBFT's ed25519 ValidatorUpdate maps to ours; other key types are refused."""
    ed = pb.ValidatorUpdate(pub_key=keys_pb2.PublicKey(ed25519=KEY), power=3)
    assert from_pb_validator(ed) == ValidatorUpdate(pub_key=KEY, power=3)
    secp = pb.ValidatorUpdate(pub_key=keys_pb2.PublicKey(secp256k1=b"\x02" * 33), power=3)
    with pytest.raises(ValueError, match="secp256k1"):
        from_pb_validator(secp)


def test_parse_address() -> None:
    """CometBFT's proxy_app form tcp://host:port is the only accepted one."""
    assert parse_address("tcp://127.0.0.1:26658") == ("127.0.0.1", 26658)
    with pytest.raises(ValueError):
        parse_address("unix:///tmp/abci.sock")


# --- (b) round trips through a real server on loopback ------------------------------------


class FakeApp:
    """Implements AbciApp, records calls and checks they never overlap or change thread."""

    def __init__(self) -> None:
        """Start with no calls seen."""
        self.calls: list[str] = []
        self.threads: set[int] = set()
        self.active = 0
        self.max_active = 0
        self.fail_on: set[str] = set()

    def _enter(self, name: str) -> None:
        """Record a call, sleep briefly so overlapping calls would be caught, maybe fail."""
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.threads.add(threading.get_ident())
        self.calls.append(name)
        time.sleep(0.01)
        self.active -= 1
        if name in self.fail_on:
            raise RuntimeError(f"{name} exploded")

    def info(self) -> InfoResult:
        self._enter("info")
        return InfoResult(last_block_height=4, last_block_app_hash=b"\x01", version="t")

    def init_chain(self, req: InitChainRequest) -> InitChainResult:
        self._enter("init_chain")
        return InitChainResult(app_hash=req.app_state[:2], validators=req.validators)

    def check_tx(self, tx: bytes, recheck: bool = False) -> TxResult:
        self._enter("check_tx")
        return TxResult(code=0 if tx else 7, log="ok" if tx else "empty")

    def prepare_proposal(
        self, req: BlockRequest, max_tx_bytes: int, last_commit: ExtendedCommit = NO_COMMIT
    ) -> tuple[bytes, ...]:
        self._enter("prepare_proposal")
        self.last_commit = last_commit
        return tuple(tx for tx in req.txs if len(tx) <= max_tx_bytes)

    def process_proposal(self, req: BlockRequest) -> bool:
        self._enter("process_proposal")
        return b"bad" not in req.txs

    def finalize_block(self, req: BlockRequest) -> FinalizeBlockResult:
        self._enter("finalize_block")
        return FinalizeBlockResult(
            tx_results=tuple(TxResult() for _ in req.txs),
            app_hash=req.height.to_bytes(8, "big"),
            validator_updates=(ValidatorUpdate(pub_key=KEY, power=req.time % 100),),
        )

    def commit(self) -> int:
        self._enter("commit")
        return 0

    def extend_vote(self, height: int, txs: tuple[bytes, ...]) -> bytes:
        self._enter("extend_vote")
        return b"ext@%d:%d" % (height, len(txs))

    def verify_vote_extension(self, extension: bytes) -> bool:
        self._enter("verify_vote_extension")
        return extension != b"bad"

    def query(self, path: str, data: bytes, height: int = 0) -> QueryResult:
        self._enter("query")
        return QueryResult(value=path.encode() + data, height=height)


class Client:
    """A raw ABCI socket client, as CometBFT's: writes frames, reads framed responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open connection."""
        self.reader = reader
        self.writer = writer

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as given (possibly partial or several frames)."""
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), IO_TIMEOUT_S)

    async def receive(self) -> pb.Response:
        """Read one framed Response."""
        frame = await asyncio.wait_for(read_frame(self.reader), IO_TIMEOUT_S)
        assert frame is not None, "server closed the connection"
        return pb.Response.FromString(frame)

    async def call(self, request: pb.Request) -> pb.Response:
        """Send one request and read its response."""
        await self.send_raw(encode_frame(request))
        return await self.receive()

    async def at_eof(self) -> bool:
        """True once the server has closed its side."""
        return await asyncio.wait_for(self.reader.read(1), IO_TIMEOUT_S) == b""


@asynccontextmanager
async def running_server(
    app: FakeApp,
) -> AsyncIterator[Callable[[], Awaitable[Client]]]:
    """Run an AbciServer on 127.0.0.1 (free port); yield a connect() factory."""
    server = AbciServer(app)
    listener = await server.start("127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    clients: list[Client] = []

    async def connect() -> Client:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT_S)
        clients.append(Client(reader, writer))
        return clients[-1]

    try:
        yield connect
    finally:
        for client in clients:
            client.writer.close()
        listener.close()
        await asyncio.wait_for(listener.wait_closed(), IO_TIMEOUT_S)
        server.close()


def timestamp(seconds: int) -> dict[str, int]:
    """A google.protobuf.Timestamp initializer."""
    return {"seconds": seconds}


def test_two_frames_in_one_write() -> None:
    """Info and Flush sent in one write are answered in order."""

    async def scenario() -> None:
        async with running_server(FakeApp()) as connect:
            client = await connect()
            info = encode_frame(pb.Request(info=pb.RequestInfo(version="0.38.26")))
            await client.send_raw(info + encode_frame(pb.Request(flush=pb.RequestFlush())))
            first, second = await client.receive(), await client.receive()
            assert first.info.last_block_height == 4
            assert first.info.last_block_app_hash == b"\x01"
            assert first.info.version == "t"
            assert first.info.app_version == 1
            assert second.WhichOneof("value") == "flush"

    asyncio.run(scenario())


def test_frame_split_across_writes() -> None:
    """A frame cut inside its length prefix and inside its body is buffered until complete."""

    async def scenario() -> None:
        async with running_server(FakeApp()) as connect:
            client = await connect()
            frame = encode_frame(pb.Request(check_tx=pb.RequestCheckTx(tx=b"t" * 300)))
            await client.send_raw(frame[:1])
            await asyncio.sleep(0.05)
            await client.send_raw(frame[1:100])
            await asyncio.sleep(0.05)
            await client.send_raw(frame[100:])
            response = await client.receive()
            assert response.check_tx.code == 0
            assert response.check_tx.log == "ok"

    asyncio.run(scenario())


def test_large_frame() -> None:
    """A 4 MiB CheckTx (above the StreamReader's buffer limit) arrives whole."""

    async def scenario() -> None:
        async with running_server(FakeApp()) as connect:
            client = await connect()
            tx = bytes(4 * 1024 * 1024)
            response = await client.call(pb.Request(check_tx=pb.RequestCheckTx(tx=tx)))
            assert response.check_tx.code == 0

    asyncio.run(scenario())


def test_oversized_length_prefix_closes_connection() -> None:
    """A length above MAX_FRAME_BYTES cannot be a CometBFT message: drop the connection."""

    async def scenario() -> None:
        async with running_server(FakeApp()) as connect:
            client = await connect()
            await client.send_raw(encode_uvarint(MAX_FRAME_BYTES + 1))
            assert await client.at_eof()

    asyncio.run(scenario())


def test_block_lifecycle() -> None:
    """InitChain, PrepareProposal, ProcessProposal, FinalizeBlock, Commit and Query map through."""

    async def scenario() -> None:
        app = FakeApp()
        async with running_server(app) as connect:
            client = await connect()
            validator = pb.ValidatorUpdate(pub_key=keys_pb2.PublicKey(ed25519=KEY), power=9)
            init = await client.call(
                pb.Request(
                    init_chain=pb.RequestInitChain(
                        chain_id="racenet-test",
                        time=timestamp(1_700_000_000),
                        validators=[validator],
                        app_state_bytes=b'{"a":1}',
                        initial_height=1,
                    )
                )
            )
            assert init.init_chain.app_hash == b'{"'
            assert list(init.init_chain.validators) == [validator]

            prepare = await client.call(
                pb.Request(
                    prepare_proposal=pb.RequestPrepareProposal(max_tx_bytes=3, txs=[b"abc", b"toolong"], height=1)
                )
            )
            assert list(prepare.prepare_proposal.txs) == [b"abc"]
            assert app.last_commit == ExtendedCommit()

            vote = pb.ExtendedVoteInfo(
                validator=pb.Validator(address=b"v" * 20, power=3), vote_extension=b"e", extension_signature=b"s" * 64
            )
            last = pb.ExtendedCommitInfo(round=2, votes=[vote, pb.ExtendedVoteInfo(validator=pb.Validator())])
            await client.call(
                pb.Request(prepare_proposal=pb.RequestPrepareProposal(max_tx_bytes=9, local_last_commit=last))
            )
            assert app.last_commit == ExtendedCommit(2, (ExtendedVote(b"v" * 20, b"e", b"s" * 64),))
            extend = await client.call(pb.Request(extend_vote=pb.RequestExtendVote(height=2, txs=[b"t"])))
            assert extend.extend_vote.vote_extension == b"ext@2:1"
            for extension, status in (
                (b"ok", pb.ResponseVerifyVoteExtension.ACCEPT),
                (b"bad", pb.ResponseVerifyVoteExtension.REJECT),
            ):
                verify = await client.call(
                    pb.Request(verify_vote_extension=pb.RequestVerifyVoteExtension(height=2, vote_extension=extension))
                )
                assert verify.verify_vote_extension.status == status

            process = await client.call(pb.Request(process_proposal=pb.RequestProcessProposal(txs=[b"bad"], height=1)))
            assert process.process_proposal.status == pb.ResponseProcessProposal.REJECT

            final = await client.call(
                pb.Request(
                    finalize_block=pb.RequestFinalizeBlock(txs=[b"abc"], height=1, time=timestamp(1_700_000_042))
                )
            )
            assert final.finalize_block.app_hash == (1).to_bytes(8, "big")
            assert len(final.finalize_block.tx_results) == 1
            update = final.finalize_block.validator_updates[0]
            assert (update.pub_key.ed25519, update.power) == (KEY, 42)

            commit = await client.call(pb.Request(commit=pb.RequestCommit()))
            assert commit.commit.retain_height == 0

            query = await client.call(pb.Request(query=pb.RequestQuery(path="/bank", data=b"x", height=1)))
            assert (query.query.code, query.query.value, query.query.height) == (
                0,
                b"/bankx",
                1,
            )
        assert app.calls == [
            "init_chain",
            "prepare_proposal",
            "prepare_proposal",
            "extend_vote",
            "verify_vote_extension",
            "verify_vote_extension",
            "process_proposal",
            "finalize_block",
            "commit",
            "query",
        ]

    asyncio.run(scenario())


def test_requests_answered_without_the_app() -> None:
    """Echo and state-sync requests have fixed answers."""

    async def scenario() -> None:
        app = FakeApp()
        async with running_server(app) as connect:
            client = await connect()
            echo = await client.call(pb.Request(echo=pb.RequestEcho(message="ping")))
            assert echo.echo.message == "ping"
            listed = await client.call(pb.Request(list_snapshots=pb.RequestListSnapshots()))
            assert list(listed.list_snapshots.snapshots) == []
            offer = await client.call(pb.Request(offer_snapshot=pb.RequestOfferSnapshot()))
            assert offer.offer_snapshot.result == pb.ResponseOfferSnapshot.ABORT
            load = await client.call(pb.Request(load_snapshot_chunk=pb.RequestLoadSnapshotChunk(height=1)))
            assert load.load_snapshot_chunk.chunk == b""
            apply = await client.call(pb.Request(apply_snapshot_chunk=pb.RequestApplySnapshotChunk(index=0)))
            assert apply.apply_snapshot_chunk.result == pb.ResponseApplySnapshotChunk.ABORT
        assert app.calls == []

    asyncio.run(scenario())


def test_app_calls_are_serialized_on_one_thread() -> None:
    """Four concurrent connections (as CometBFT opens) never run the App concurrently."""

    async def scenario() -> None:
        app = FakeApp()
        async with running_server(app) as connect:
            clients = [await connect() for _ in range(4)]

            async def hammer(client: Client) -> None:
                for _ in range(5):
                    response = await client.call(pb.Request(check_tx=pb.RequestCheckTx(tx=b"t")))
                    assert response.check_tx.code == 0

            await asyncio.gather(*(hammer(client) for client in clients))
        assert len(app.calls) == 20
        assert app.max_active == 1
        assert len(app.threads) == 1

    asyncio.run(scenario())


# --- (c) App exceptions ------------------------------------------------------------------


def test_check_tx_and_query_exceptions_become_error_codes() -> None:
    """A raising CheckTx/Query yields code APP_ERROR_CODE; the connection stays usable."""

    async def scenario() -> None:
        app = FakeApp()
        app.fail_on = {"check_tx", "query"}
        async with running_server(app) as connect:
            client = await connect()
            check = await client.call(pb.Request(check_tx=pb.RequestCheckTx(tx=b"t")))
            assert check.check_tx.code == APP_ERROR_CODE
            assert check.check_tx.codespace == ERROR_CODESPACE
            assert "check_tx exploded" in check.check_tx.log
            query = await client.call(pb.Request(query=pb.RequestQuery(path="/x")))
            assert query.query.code == APP_ERROR_CODE
            assert "query exploded" in query.query.log
            echo = await client.call(pb.Request(echo=pb.RequestEcho(message="alive")))
            assert echo.echo.message == "alive"

    asyncio.run(scenario())


def test_consensus_exception_closes_connection_but_not_server() -> None:
    """A raising FinalizeBlock answers ResponseException and closes only that connection."""

    async def scenario() -> None:
        app = FakeApp()
        app.fail_on = {"finalize_block"}
        async with running_server(app) as connect:
            consensus = await connect()
            response = await consensus.call(pb.Request(finalize_block=pb.RequestFinalizeBlock(height=1)))
            assert response.WhichOneof("value") == "exception"
            assert "finalize_block exploded" in response.exception.error
            assert await consensus.at_eof()
            other = await connect()
            echo = await other.call(pb.Request(echo=pb.RequestEcho(message="still here")))
            assert echo.echo.message == "still here"

    asyncio.run(scenario())


def test_empty_request_is_an_exception() -> None:
    """A Request with no oneof set is a protocol error, answered with ResponseException."""

    async def scenario() -> None:
        async with running_server(FakeApp()) as connect:
            client = await connect()
            response = await client.call(pb.Request())
            assert response.WhichOneof("value") == "exception"

    asyncio.run(scenario())
