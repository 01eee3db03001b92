"""DiLoCo against synchronous data-parallel training on the same model, data and compute, and what PoL costs.

Both runs start `--workers` processes on 127.0.0.1 (gloo), train the byte-level GPT (`--preset`) on the Debian
text (`--source`) for the same number of inner steps per worker, each step reading the same windows (slot w of
the job reads shard w at global step s in both runs):

- data-parallel: every step all-reduces the gradients, then one AdamW step on every worker (the baseline);
- DiLoCo (`racenet.train.diloco`): H AdamW steps per worker, then one all-reduce of the pseudo-gradient and an
  outer Nesterov step, for `--rounds` rounds; with proof-of-learning on (segments of `--segment-steps`,
  `--open` segments per worker per round picked after the trace is committed).

Figures:
- loss_ratio = DiLoCo's held-out loss / data-parallel's (goal ≤ 1.05);
- comm_reduction = bytes sent by a data-parallel rank / by a DiLoCo rank (ring all-reduce count; goal ≥ H/2);
- pol_share = CPU seconds a validator spends verifying every opened segment (load, hash, recompute indices,
  re-run; after one untimed warm-up verification, as a validator is a running daemon) / CPU seconds of all
  workers' inner steps (goal ≤ 0.10). Every opened segment must pass. pol_detection_10pct is the chance that
  a worker faking 10% of its segments has one of them opened in this job: 1 - 0.9^(rounds·open).

    python bench/training.py [--rounds 6] [--inner-steps 50] [--workers 2] [--json]

Ends with `RESULT loss_ratio=<x> comm_reduction=<x> pol_share=<x>`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import TCPStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from racenet.train import pol
from racenet.train.data import Corpus
from racenet.train.diloco import RoundCoordinator, WorkerConfig, free_port, ring_bytes, run_participant
from racenet.train.model import GPT, PRESETS
from racenet.train.steps import InnerConfig, JobSpec, evaluate, inner_optimizer

TIMEOUT_S = 120.0
"""Process-group and store timeout of every network call."""


def data_parallel(job: JobSpec, rank: int, world: int, port: int, result_path: Path) -> None:
    """One synchronous data-parallel rank: gradients averaged by all-reduce every step."""
    torch.set_num_threads(1)
    corpus = Corpus.load(job.data)
    timeout = timedelta(seconds=TIMEOUT_S)
    store = TCPStore("127.0.0.1", port, world_size=world, is_master=rank == 0, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=timeout)
    model = GPT(job.model, seed=job.model_seed)
    opt = inner_optimizer(model.parameters(), job.inner)
    params = list(model.parameters())
    numel = sum(p.numel() for p in params)
    sent, seconds = 0, 0.0
    try:
        for step in range(job.rounds * job.inner_steps):
            t0 = time.process_time()
            x, y = corpus.batch(job.step_starts(corpus, rank, step), job.model.block_size)
            _, loss = model(x, y)
            assert loss is not None
            opt.zero_grad(set_to_none=True)
            loss.backward()
            seconds += time.process_time() - t0
            flat = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
            dist.all_reduce(flat)
            sent += ring_bytes(numel, world)
            t0 = time.process_time()
            offset = 0
            for p in params:
                p.grad = (flat[offset : offset + p.numel()] / world).view_as(p)
                offset += p.numel()
            torch.nn.utils.clip_grad_norm_(params, job.inner.grad_clip)
            opt.step()
            seconds += time.process_time() - t0
    finally:
        dist.destroy_process_group()
    result = {"eval_loss": evaluate(model, corpus), "bytes_sent": sent, "inner_seconds": seconds}
    result_path.write_text(json.dumps(result))


def run_processes(targets: list[tuple[Any, tuple[Any, ...]]]) -> None:
    """Start one spawned process per (function, args) and wait for all (bounded)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=f, args=a) for f, a in targets]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 1800
    for p in procs:
        p.join(timeout=max(1.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a worker failed: exit codes {[p.exitcode for p in procs]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--source", default="fortunes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--inner-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--outer-lr", type=float, default=0.7)
    parser.add_argument(
        "--outer-momentum", type=float, default=0.5, help="0.9 (the paper's) overshoots in a job of a few rounds"
    )
    parser.add_argument("--segment-steps", type=int, default=2)
    parser.add_argument("--open", type=int, default=1, help="PoL segments opened per worker per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    job = JobSpec(
        PRESETS[args.preset],
        model_seed=1,
        data=args.source,
        data_seed=42,
        shards=args.workers,
        rounds=args.rounds,
        inner_steps=args.inner_steps,
        inner=InnerConfig(lr=args.lr, batch_size=args.batch_size),
        outer_lr=args.outer_lr,
        outer_momentum=args.outer_momentum,
    )
    corpus = Corpus.load(job.data)
    initial = evaluate(GPT(job.model, seed=job.model_seed), corpus)
    with tempfile.TemporaryDirectory(prefix="racenet-bench-training-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.monotonic()
        port = free_port()
        run_processes([(data_parallel, (job, r, args.workers, port, tmp / f"dp{r}.json")) for r in range(args.workers)])
        dp_wall = time.monotonic() - t0
        dp = [json.loads((tmp / f"dp{r}.json").read_text()) for r in range(args.workers)]

        t0 = time.monotonic()
        with RoundCoordinator(args.workers, arrival_grace_s=TIMEOUT_S, report_timeout_s=TIMEOUT_S) as coordinator:
            run_processes(
                [
                    (
                        run_participant,
                        (
                            job,
                            WorkerConfig(
                                w, tmp / "ckpt", segment_steps=args.segment_steps, collective_timeout_s=TIMEOUT_S
                            ),
                            coordinator.endpoint,
                            tmp / f"diloco{w}.json",
                            TIMEOUT_S,
                            None,
                            args.open,
                        ),
                    )
                    for w in range(args.workers)
                ]
            )
        diloco_wall = time.monotonic() - t0
        dl = [json.loads((tmp / f"diloco{w}.json").read_text()) for w in range(args.workers)]

        torch.set_num_threads(1)
        warm = pol.load_segment(Path(dl[0]["segments"][0]))  # a validator is a running daemon: warm its kernels up
        pol.verify_segment(job, corpus, pol.commit(warm), warm)
        verdicts = []
        start_cpu = time.process_time()
        for r in dl:
            traces = {t["first_step"]: pol.RoundTrace.from_json(t) for t in r["traces"]}
            for path in r["segments"]:
                segment = pol.load_segment(Path(path))
                first = segment.first_step - segment.first_step % job.inner_steps
                commitment = traces[first].segment((segment.first_step - first) // args.segment_steps)
                verdicts.append(pol.verify_segment(job, corpus, commitment, segment))
        verify_cpu = time.process_time() - start_cpu

    train_cpu = sum(r["inner_seconds"] for r in dl)
    report = {
        "preset": args.preset,
        "parameters": sum(p.numel() for p in GPT(job.model).parameters()),
        "workers": args.workers,
        "rounds": args.rounds,
        "inner_steps": args.inner_steps,
        "initial_loss": initial,
        "dp_loss": dp[0]["eval_loss"],
        "diloco_loss": dl[0]["eval_loss"],
        "dp_bytes_per_rank": dp[0]["bytes_sent"],
        "diloco_bytes_per_rank": dl[0]["bytes_sent"],
        "dp_wall_s": dp_wall,
        "diloco_wall_s": diloco_wall,
        "diloco_train_cpu_s": train_cpu,
        "pol_segments": len(verdicts),
        "pol_passed": sum(v.passed for v in verdicts),
        "pol_max_distance": max((v.distance for v in verdicts), default=0.0),
        "pol_verify_cpu_s": verify_cpu,
        "pol_detection_10pct": 1 - 0.9 ** (args.rounds * args.open),
        "loss_ratio": dl[0]["eval_loss"] / dp[0]["eval_loss"],
        "comm_reduction": dp[0]["bytes_sent"] / dl[0]["bytes_sent"],
        "pol_share": verify_cpu / train_cpu,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>24}: {value:.4g}" if isinstance(value, float) else f"{key:>24}: {value}")
    if report["pol_passed"] != report["pol_segments"]:
        raise SystemExit("an honest proof-of-learning segment failed verification")
    print(
        f"RESULT loss_ratio={report['loss_ratio']:.4f} comm_reduction={report['comm_reduction']:.1f} "
        f"pol_share={report['pol_share']:.4f}"
    )


if __name__ == "__main__":
    main()
