"""Signed transfers per second through finalize_block + commit, against raw ed25519 verifies.

Every transfer goes to a fresh address and senders rotate over --senders accounts,
so no per-account cache makes the numbers look better than a busy real chain.
The ratio says how much of the signature-verification budget the state machine keeps:
every transfer costs one verify, so ratio 1.0 would mean the rest is free.

    python bench/chain_tps.py [--txs 6000] [--block 1000] [--senders 2000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from racenet.abci.driver import Driver
from racenet.chain.app import App
from racenet.chain.app_state import AppState
from racenet.chain.codec import encode
from racenet.chain.genesis import Genesis
from racenet.chain.modules.bank import Balance, BankGenesis, MsgSend
from racenet.chain.modules.bank import Params as BankParams
from racenet.chain.tx import AnyMsg, TxBody, build_tx, sign_bytes
from racenet.crypto.keys import PrivateKey

CHAIN_ID = "bench"
FEE = BankParams().required_fee(1024, [0])
"""Covers a transfer of up to 1 KiB under the default fee schedule."""


def verify_rate(seconds: float = 2.0) -> float:
    """Raw ed25519 verifications per second on this machine (PyNaCl)."""
    key = PrivateKey.generate()
    msg = sign_bytes(key.public_key.raw, build_body_stub())
    sig = key.sign(msg)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            key.public_key.verify(msg, sig)
        n += 200
    return n / (time.perf_counter() - start)


def build_body_stub() -> TxBody:
    """A transfer-sized body, so the verify baseline hashes as many bytes as a real tx."""
    return TxBody(CHAIN_ID, 7, 1000, "", (AnyMsg(MsgSend.TYPE, encode(MsgSend(b"\x01" * 20, 12345))),))


def make_chain(home: Path, senders: list[PrivateKey]) -> Driver:
    """A fresh chain where every sender has funds."""
    balances = tuple(Balance(k.public_key.address, 10**14) for k in senders)  # 100,000 icon: 4,000 senders fit the 400M
    genesis = Genesis(
        chain_id=CHAIN_ID, genesis_time=1_700_000_000, app_state=AppState(bank=BankGenesis(balances=balances))
    )
    driver = Driver(App(home / "app.db"))
    driver.init_chain(genesis)
    driver.run_block([], genesis.genesis_time + 1)
    return driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--txs", type=int, default=6000)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=2000, help="distinct sending accounts")
    args = parser.parse_args()

    senders = [PrivateKey.generate() for _ in range(args.senders)]
    with tempfile.TemporaryDirectory() as tmp:
        driver = make_chain(Path(tmp), senders)
        txs = [
            build_tx(senders[i % len(senders)], CHAIN_ID, i // len(senders), FEE, [MsgSend(os.urandom(20), 1 + i % 7)])
            for i in range(args.txs)
        ]
        blocks = [txs[i : i + args.block] for i in range(0, len(txs), args.block)]
        elapsed = 0.0
        for n, block in enumerate(blocks):
            proposal = driver.propose(block, 1_700_000_100 + n)
            start = time.perf_counter()
            result = driver.execute(proposal)
            elapsed += time.perf_counter() - start
            failed = [r for r in result.tx_results if r.code]
            if failed:
                raise SystemExit(f"{len(failed)} transfers failed: {failed[0].log}")
        driver.app.close()
    tps = args.txs / elapsed
    rate = verify_rate()
    print(f"transfers: {args.txs} in blocks of {args.block}, finalize_block+commit {elapsed:.2f}s")
    print(f"chain: {tps:,.0f} transfers/s   ed25519 verify: {rate:,.0f} /s")
    print(f"RESULT chain_tps={tps:.0f} verify_rate={rate:.0f} ratio={tps / rate:.3f}")


if __name__ == "__main__":
    main()
