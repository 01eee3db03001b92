"""The random beacon's costs on this machine: key generation by size, per-round BLS operations, and the
block-time cost of vote extensions at 4 validators.

(a) Key generation for n equal-weight participants (shares = max(64, n)): every dealing built as the agent
    builds it (polynomial, Feldman commitments, one encrypted share per index), every participant
    decrypting and checking its shares of every dealing, the chain's checks of every dealing, the group
    key, and every share's public key. All n participants run here on one machine, so the per-participant
    figure (total / n) estimates one node's work.
(b) Partial sign, combine (threshold 33 of 64) and verify, median of many.
(c) ms per block of the in-process driver on a 4-validator chain with the beacon (agents extending votes,
    the proposer combining, every node checking) against the same chain without vote extensions, same run.

    python bench/beacon.py [--sizes 4,8,16,32,64] [--blocks 40] [--json]

Ends with `RESULT dkg_s_64=… verify_ms=… sign_ms=… combine_ms=… block_ms_beacon=… block_ms_plain=… block_ratio=…`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's four-validator genesis helpers

from racenet.abci.driver import Driver
from racenet.chain.app import App
from racenet.chain.modules.beacon import Params as BeaconParams
from racenet.chain.modules.beacon.dkg import allocate, dealing_fault, group_key
from racenet.chain.modules.beacon.types import Dealing
from racenet.crypto.threshold import (
    ORDER,
    Polynomial,
    combine,
    decrypt_share,
    encrypt_share,
    evaluate_commitments,
    g2,
    public_key,
    share_matches,
    sign,
    verify,
)
from tests.chain import GENESIS_TIME, beacon_validators
from tests.test_beacon import genesis as four_validator_genesis

VERIFY_GOAL_MS = 3.0


def dkg_seconds(n: int) -> float:
    """Seconds for a whole key generation of n equal-weight participants (all simulated here)."""
    shares = max(64, n)
    params = BeaconParams(shares=shares, max_participants=n)
    secrets_ = [secrets.randbelow(ORDER - 1) + 1 for _ in range(n)]
    addresses = [i.to_bytes(20, "big") for i in range(1, n + 1)]
    keys = {a: public_key(s) for a, s in zip(addresses, secrets_, strict=True)}
    began = time.perf_counter()
    setup = allocate(0, params, [(a, 10) for a in addresses], keys)
    dealings: list[tuple[bytes, Dealing]] = []
    for address in addresses:
        poly = Polynomial.derive(secrets.token_bytes(32), setup.threshold - 1)
        ephemeral = secrets.randbelow(ORDER - 1) + 1
        shares_ = tuple(encrypt_share(ephemeral, h.key, i, poly.at(i)) for h in setup.holders for i in h.indices)
        dealings.append((address, Dealing(0, poly.commitments(), public_key(ephemeral), shares_)))
    for _, dealing in dealings:
        assert dealing_fault(setup, dealing) == ""
    for holder, secret in zip(setup.holders, secrets_, strict=True):
        for _, dealing in dealings:
            points = [g2(c) for c in dealing.commitments]
            for i in holder.indices:
                assert share_matches(points, i, decrypt_share(secret, dealing.ephemeral, i, dealing.shares[i - 1]))
    group = group_key(setup, dealings, 1)
    points = [g2(c) for c in group.commitments]
    for index in range(1, sum(h.count for h in setup.holders) + 1):
        evaluate_commitments(points, index)
    return time.perf_counter() - began


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def round_ops(repeat: int) -> dict[str, float]:
    """Median ms of one partial signature, one combination of 33 of 64, one verification."""
    threshold = 33
    poly = Polynomial.derive(secrets.token_bytes(32), threshold - 1)
    key = g2(poly.commitments()[0])
    message = b"racenet bench round"
    partials = {i: sign(poly.at(i), message) for i in range(1, 65)}
    signature = combine(partials, threshold)
    assert verify(key, message, signature)
    return {
        "sign_ms": median_ms(lambda: sign(poly.at(7), message), repeat),
        "combine_ms": median_ms(lambda: combine(partials, threshold), repeat),
        "verify_ms": median_ms(lambda: verify(key, message, signature), repeat),
    }


def block_ms(blocks: int, with_beacon_agents: bool) -> float:
    """Mean ms per block of the 4-validator chain after its genesis key generation."""
    g = four_validator_genesis()
    beacon = dataclasses.replace(g.app_state.beacon, params=BeaconParams())  # 64 shares, the default windows
    g = dataclasses.replace(g, app_state=dataclasses.replace(g.app_state, beacon=beacon))
    with tempfile.TemporaryDirectory() as d:
        app = App(Path(d) / "app.db")
        driver = Driver(app, beacon_validators(g) if with_beacon_agents else ())
        driver.init_chain(g)
        for _ in range(12):  # the genesis key generation (default windows: 9 blocks) and the first rounds
            driver.run_block([], GENESIS_TIME + app.height + 1)
        began = time.perf_counter()
        for _ in range(blocks):
            driver.run_block([], GENESIS_TIME + app.height + 1)
        elapsed = time.perf_counter() - began
        if with_beacon_agents:
            assert app.beacon.keeper.latest.get(app.read_context()) >= blocks, "a round every block"
        app.close()
    return elapsed / blocks * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4,8,16,32,64", help="participant counts of the key generations")
    parser.add_argument("--blocks", type=int, default=40, help="blocks timed per chain in (c)")
    parser.add_argument("--repeat", type=int, default=200, help="repetitions per BLS operation in (b)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    dkg = {n: dkg_seconds(n) for n in sizes}
    ops = round_ops(args.repeat)
    beacon_ms, plain_ms = block_ms(args.blocks, True), block_ms(args.blocks, False)
    results = {
        "dkg_s": dkg,
        "dkg_s_per_participant": {n: s / n for n, s in dkg.items()},
        **ops,
        "block_ms_beacon": beacon_ms,
        "block_ms_plain": plain_ms,
        "block_ratio": beacon_ms / plain_ms,
    }
    if args.json:
        print(json.dumps(results))
    else:
        print("key generation (all participants simulated on this machine):")
        for n, s in dkg.items():
            print(f"  {n:3d} participants: {s:7.2f} s total, {s / n:6.3f} s per participant")
        print(
            f"partial sign {ops['sign_ms']:.2f} ms, combine 33/64 {ops['combine_ms']:.2f} ms, "
            f"verify {ops['verify_ms']:.2f} ms (goal ≤ {VERIFY_GOAL_MS} ms: "
            f"{'met' if ops['verify_ms'] <= VERIFY_GOAL_MS else 'NOT met'})"
        )
        print(
            f"block at 4 validators: {beacon_ms:.1f} ms with the beacon, {plain_ms:.1f} ms without "
            f"(ratio {beacon_ms / plain_ms:.2f})"
        )
    dkg_64 = dkg.get(64, float("nan"))
    print(
        f"RESULT dkg_s_64={dkg_64:.3f} verify_ms={ops['verify_ms']:.3f} sign_ms={ops['sign_ms']:.3f} "
        f"combine_ms={ops['combine_ms']:.3f} block_ms_beacon={beacon_ms:.2f} block_ms_plain={plain_ms:.2f} "
        f"block_ratio={beacon_ms / plain_ms:.2f}"
    )


if __name__ == "__main__":
    main()
