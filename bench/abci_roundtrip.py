"""CheckTx round trips per second through racenet's ABCI socket server, against App.check_tx called directly.

Both sides check the same signed transfers against a fresh App on the same funded genesis.
The server is the real asyncio `AbciServer` on 127.0.0.1, in its own process as behind
CometBFT; the client frames `RequestCheckTx` with the generated CometBFT protobuf classes and
waits for each response before sending the next (CometBFT pipelines, so this is the slow case).
The ratio says how much of the App's own CheckTx rate survives the socket, framing and protobuf.
CheckTx advances account sequences in the check state, so every tx has the next sequence of
one of --senders accounts.

    python bench/abci_roundtrip.py [--txs 5000] [--senders 300]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from racenet.abci.driver import Driver
from racenet.abci.pb.tendermint.abci import types_pb2 as pb
from racenet.abci.server import AbciServer, encode_frame
from racenet.chain.app import App
from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis
from racenet.chain.modules.bank import Balance, BankGenesis, MsgSend
from racenet.chain.modules.bank import Params as BankParams
from racenet.chain.tx import build_tx
from racenet.crypto.keys import PrivateKey

CHAIN_ID = "bench"
GENESIS_TIME = 1_700_000_000
FEE = BankParams().required_fee(1024, [0])
HOST = "127.0.0.1"
IO_TIMEOUT_S = 30.0


def make_workload(tx_count: int, sender_count: int) -> tuple[Genesis, list[bytes]]:
    """A genesis funding every sender, and transfers cycling over the senders with rising sequences."""
    senders = [PrivateKey.generate() for _ in range(sender_count)]
    balances = tuple(Balance(k.public_key.address, 10**14) for k in senders)  # 100,000 icon each: within the supply
    genesis = Genesis(
        chain_id=CHAIN_ID, genesis_time=GENESIS_TIME, app_state=AppState(bank=BankGenesis(balances=balances))
    )
    txs = [
        build_tx(senders[i % sender_count], CHAIN_ID, i // sender_count, FEE, [MsgSend(os.urandom(20), 1 + i % 7)])
        for i in range(tx_count)
    ]
    return genesis, txs


def fresh_app(directory: Path, genesis: Genesis) -> App:
    """An App with `genesis` committed (one empty block), so CheckTx runs against stored state."""
    directory.mkdir(parents=True, exist_ok=True)
    driver = Driver(App(directory / "app.db"))
    driver.init_chain(genesis)
    driver.run_block([], GENESIS_TIME + 1)
    return driver.app


def direct_rate(app: App, txs: list[bytes]) -> float:
    """App.check_tx calls per second over all txs; every tx must be accepted."""
    start = time.perf_counter()
    for tx in txs:
        result = app.check_tx(tx)
        if result.code:
            raise SystemExit(f"direct check_tx rejected a tx: {result.log} (code {result.code})")
    return len(txs) / (time.perf_counter() - start)


def serve(directory: Path, genesis: Genesis, conn: Connection) -> None:
    """Child process: serve a fresh App over ABCI on a free loopback port, reported through `conn`."""
    app = fresh_app(directory, genesis)

    async def main() -> None:
        """Listen, report the port, serve until terminated."""
        listener = await AbciServer(app).start(HOST, 0)
        conn.send(listener.sockets[0].getsockname()[1])
        async with listener:
            await listener.serve_forever()

    asyncio.run(main())


def read_exactly(stream: socket.SocketIO, n: int) -> bytes:
    """n bytes from a blocking socket stream; EOF is an error."""
    data = bytearray()
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise SystemExit("ABCI server closed the connection")
        data += chunk
    return bytes(data)


def read_response(stream: socket.SocketIO) -> pb.Response:
    """One uvarint-length-prefixed Response."""
    length, shift = 0, 0
    while True:
        byte = read_exactly(stream, 1)[0]
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return pb.Response.FromString(read_exactly(stream, length))


def abci_rate(port: int, txs: list[bytes]) -> float:
    """CheckTx request/response round trips per second over one connection; every tx must be accepted."""
    frames = [encode_frame(pb.Request(check_tx=pb.RequestCheckTx(tx=tx, type=pb.NEW))) for tx in txs]
    with socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = socket.SocketIO(sock, "rb")
        start = time.perf_counter()
        for frame in frames:
            sock.sendall(frame)
            response = read_response(stream)
            if response.WhichOneof("value") != "check_tx" or response.check_tx.code:
                raise SystemExit(f"ABCI CheckTx rejected a tx: {response}")
        return len(txs) / (time.perf_counter() - start)


def main() -> None:
    """Run both measurements in one process tree and print the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--txs", type=int, default=5000, help="transfers checked on each path")
    parser.add_argument("--senders", type=int, default=300, help="distinct sending accounts")
    args = parser.parse_args()

    genesis, txs = make_workload(args.txs, args.senders)
    with tempfile.TemporaryDirectory() as tmp:
        parent_conn, child_conn = multiprocessing.Pipe()
        server = multiprocessing.get_context("spawn").Process(
            target=serve, args=(Path(tmp) / "server", genesis, child_conn), daemon=True
        )
        server.start()
        try:
            if not parent_conn.poll(IO_TIMEOUT_S):
                raise SystemExit("ABCI server did not start")
            abci = abci_rate(parent_conn.recv(), txs)
        finally:
            server.terminate()
            server.join(IO_TIMEOUT_S)
        app = fresh_app(Path(tmp) / "direct", genesis)
        direct = direct_rate(app, txs)
        app.close()
    print(f"check_tx of {len(txs)} signed transfers from {args.senders} senders")
    print(f"direct App.check_tx:      {direct:,.0f} /s")
    print(f"ABCI socket round trips:  {abci:,.0f} /s (server process on {HOST}, one request in flight)")
    print(f"RESULT abci_rps={abci:.0f} direct_rps={direct:.0f} ratio={abci / direct:.3f}")


if __name__ == "__main__":
    main()
