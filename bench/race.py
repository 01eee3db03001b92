"""Race throughput against this machine's matmul peak, and the cost of validating a proof against mining it.

1. Peak: the best GFLOP/s of large square GEMMs (fp32 and bf16), measured in this run.
2. The `paper` preset's forward pass at several batch sizes in fp32 and bf16: nonces/s, GFLOP/s counted
   analytically (Preset.flops_per_nonce: 2 FLOPs per weight per token plus attention, 4 tokens per nonce) and
   mfu = GFLOP/s / peak of the same dtype.
3. The miner end to end (hashing, forward pass, permutation, distance) at the best fp32 batch size.
4. The miner's fastest honest path end to end. Where the CPU has bf16 kernels (bf16 GEMMs faster than fp32)
   that is a bf16 miner confirming its candidates in fp32: its nonces/s times the fraction of nonces whose
   bf16 output key equals the fp32 one (the others it misses), measured on the same inputs. Elsewhere bf16 is
   emulated and the fastest path is the fp32 miner. bf16_limit_ratio = that path's useful GFLOP/s / the
   best matmul peak of any dtype (the bf16 one where it is accelerated).
5. validation_cost_ratio = (time to recompute one proof's opened nonces, SAMPLE_SIZE of them in one fp32 batch)
   / (time the node mined for it: one race window, --race-seconds). Building the model is not counted on
   either side: miner and validator each build it once per race, whatever the number of proofs.

    python bench/race.py [--quick] [--race-seconds 600]

Ends with one line: RESULT race_nonces_per_s=<miner, fp32> mfu=<best accelerated dtype> validation_cost_ratio=<x>
bf16_limit_ratio=<x>.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from racenet.pow.decision import SAMPLE_SIZE
from racenet.pow.miner import Miner
from racenet.pow.presets import PAPER
from racenet.pow.race import Race, build_race
from racenet.pow.vectors import output_keys
from racenet.pow.verifier import verify_nonces

THREADS = 2
SEED = bytes(range(32))
NODE_KEY = b"\x42" * 32
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def timed(fn: Callable[[], object], min_seconds: float, min_runs: int = 2) -> float:
    """Best seconds per call of `fn` over at least `min_runs` calls and `min_seconds` (after one warm-up call)."""
    fn()
    best, total, runs = float("inf"), 0.0, 0
    while runs < min_runs or total < min_seconds:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, total, runs = min(best, elapsed), total + elapsed, runs + 1
    return best


def matmul_peak(dtype: torch.dtype, size: int, seconds: float) -> float:
    """GFLOP/s of a size^3 GEMM in `dtype` (best run)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    return 2 * size**3 / timed(lambda: a @ b, seconds) / 1e9


def forward_rate(race: Race, batch_size: int, seconds: float) -> float:
    """Nonces/s of the forward pass alone on prepared inputs."""
    tokens = race.prepare(NODE_KEY, range(batch_size)).tokens
    return batch_size / timed(lambda: race.outputs(tokens), seconds)


def miner_rate(race: Race, batch_size: int, seconds: float, confirm: Race | None = None) -> float:
    """Nonces/s of the whole miner (pipelined hashing, forward pass, permutation and distance)."""
    with Miner(race, NODE_KEY, batch_size=batch_size, confirm=confirm) as miner:
        return miner.run(seconds, []).nonces_per_second


def key_agreement(bf16: Race, fp32: Race, nonces: int) -> float:
    """Fraction of nonces whose bf16 output key equals the fp32 one (a bf16 miner misses the others)."""
    tokens = fp32.prepare(NODE_KEY, range(nonces)).tokens
    bits = fp32.preset.key_bits
    same = output_keys(bf16.outputs(tokens).float(), bits) == output_keys(fp32.outputs(tokens), bits)
    return float(same.all(1).double().mean())


def validation_seconds(race: Race) -> float:
    """Seconds to recompute SAMPLE_SIZE opened nonces of one node in one batch."""
    nonces = list(range(10**6, 10**6 + SAMPLE_SIZE))
    return timed(lambda: verify_nonces(race, NODE_KEY, nonces), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and shorter runs (about a minute)")
    parser.add_argument("--race-seconds", type=float, default=600.0, help="race window the node mines (s)")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, interop {torch.get_num_interop_threads()}")
    print(f"cpu count {os.cpu_count()}, capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine lowers every number)")
    seconds = 1.0 if args.quick else 3.0
    peak = {name: matmul_peak(dtype, 2048, seconds) for name, dtype in DTYPES.items()}
    for name, gflops in peak.items():
        print(f"matmul peak {name}: {gflops:.1f} GFLOP/s (2048^3 GEMM)")

    started = time.perf_counter()
    races = {"fp32": build_race(PAPER, SEED)}
    print(f"paper preset: {PAPER.n_params:,} parameters, built in {time.perf_counter() - started:.2f} s (fp32)")
    flops = PAPER.flops_per_nonce
    print(f"{flops / 1e9:.3f} GFLOP per nonce ({PAPER.seq_len} tokens)")
    accelerated = [name for name in DTYPES if name == "fp32" or peak[name] > peak["fp32"]]
    if "bf16" in accelerated:
        races["bf16"] = build_race(PAPER, SEED, dtype=torch.bfloat16)
    else:
        print("bf16 GEMMs are slower than fp32 here (no bf16 kernels): bf16 is left out of mfu and mining")
    batch_sizes = [16, 64] if args.quick else [1, 16, 64, 256]
    best_mfu = 0.0
    best_batch = {name: batch_sizes[0] for name in accelerated}
    best_rate = dict.fromkeys(accelerated, 0.0)
    for name in accelerated:
        for batch_size in batch_sizes:
            rate = forward_rate(races[name], batch_size, seconds)
            gflops = rate * flops / 1e9
            mfu = gflops / peak[name]
            print(f"{name} batch {batch_size:4d}: {rate:7.1f} nonces/s  {gflops:7.1f} GFLOP/s  mfu {mfu:.3f}")
            best_mfu = max(best_mfu, mfu)
            if rate > best_rate[name]:
                best_rate[name], best_batch[name] = rate, batch_size

    run_seconds = 10.0 if args.quick else 30.0
    mined = miner_rate(races["fp32"], best_batch["fp32"], run_seconds)
    print(f"miner fp32 batch {best_batch['fp32']}: {mined:.1f} nonces/s end to end")
    fastest, limit = mined, max(peak.values())
    if "bf16" in accelerated:
        agreement = key_agreement(races["bf16"], races["fp32"], 256)
        bf16_mined = miner_rate(races["bf16"], best_batch["bf16"], run_seconds, confirm=races["fp32"])
        useful = bf16_mined * agreement
        print(f"miner bf16 + fp32 confirmation: {bf16_mined:.1f} nonces/s, key agreement {agreement:.3f}: {useful:.1f}")
        fastest = max(fastest, useful)
    limit_ratio = fastest * flops / 1e9 / limit
    print(f"fastest honest path: {fastest:.1f} nonces/s = {limit_ratio:.3f} of the best matmul peak ({limit:.1f})")
    check = validation_seconds(races["fp32"])
    ratio = check / args.race_seconds
    print(
        f"validation: {SAMPLE_SIZE} opened nonces in {check:.3f} s; mining one race window: {args.race_seconds:.0f} s "
        f"({mined * args.race_seconds:,.0f} nonces, ~{mined * args.race_seconds / 900:,.0f} appropriate); "
        f"ratio {ratio:.5f}"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(
        f"RESULT race_nonces_per_s={mined:.1f} mfu={best_mfu:.3f} validation_cost_ratio={ratio:.5f} "
        f"bf16_limit_ratio={limit_ratio:.3f}"
    )


if __name__ == "__main__":
    main()
