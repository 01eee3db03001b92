"""DiLoCo on torch.distributed: H local AdamW steps per participant, then one averaged outer Nesterov step.

Every participant holds the job's global weights θ and the outer optimizer (SGD with Nesterov momentum). A round:

1. copy θ into the local model and run H inner AdamW steps on the participant's shard (the data indices of global
   inner step `round·H + i` come from `racenet.train.data`, so they are recomputable; the AdamW state carries
   over from round to round, as in the DiLoCo paper);
2. the pseudo-gradient Δ = θ - θ_local is averaged over the round's members with one `all_reduce` (gloo on CPU,
   NCCL when CUDA is present) in a process group formed for this round only;
3. θ.grad = mean Δ and the outer SGD steps; then the participant checkpoints, so it can stop and resume losslessly.

**Membership without stalls.** Who takes part in a round is decided by a `Barrier` (the chain's training module;
`RoundCoordinator` here is a local stand-in with the same rules). A participant *arrives* with its rendezvous
endpoint; the barrier closes when every live slot has arrived or `arrival_grace_s` after the first arrival, and
publishes the plan: the members (rank = position) and the rendezvous endpoint of the first member, which hosts the
round's TCPStore. Members all-reduce with a timeout and then *report* the digest of the averaged pseudo-gradient.
The round commits only if every member reported the same digest; otherwise (someone died, timed out or disagrees;
a reported failure ends the wait at once) the round is retried as a new attempt among the same slots. A slot that
misses an arrival barrier is dropped for the rest of the job. So a dead participant costs the others one grace
period, plus one collective timeout if it died after the barrier closed, never the job. Every network call has a
timeout: store connections and waits (`barrier_timeout_s`), process-group init and collectives
(`collective_timeout_s`).

**Bytes communicated** are counted as a ring all-reduce sends them: 2·(n-1)/n times the payload per rank.

**Proof-of-learning.** With `segment_steps` k > 0 the worker snapshots its state every k inner steps, commits the
round's `RoundTrace` (`on_trace`), asks `select` (the beacon, known only after the commitment) which segments to
open, and saves those artifacts (`racenet.train.pol`). All members' traces of a round share boundary 0 (the global
weights), which the chain can check.

**Inference first.** Between inner steps the worker calls `should_yield()` and sleeps while it returns True.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from threading import Event, Thread
from typing import Protocol, TypeVar

import torch
import torch.distributed as dist

# The store torch.distributed re-exports without declaring it (so the typed import comes from its home).
from torch._C._distributed_c10d import TCPStore

from racenet.train import pol
from racenet.train.data import Corpus
from racenet.train.model import GPT
from racenet.train.steps import JobSpec, evaluate, inner_optimizer, inner_step

POLL_S = 0.02
YIELD_SLEEP_S = 0.01
MAX_ATTEMPTS = 8
"""Attempts of one round before a participant gives up (a failed attempt re-forms with whoever arrives again)."""

Endpoint = tuple[str, int]
T = TypeVar("T")


class ExcludedError(RuntimeError):
    """This participant was dropped from the job (it missed a barrier) and must rejoin through the chain."""


@dataclass(frozen=True)
class RoundPlan:
    """The members of one attempt of one round and where they meet."""

    round: int
    attempt: int
    members: tuple[int, ...]
    master: Endpoint

    def rank(self, slot: int) -> int:
        """This slot's rank in the round's process group."""
        return self.members.index(slot)


class Barrier(Protocol):
    """The round barrier the chain holds (arrivals, plans, reports, verdicts)."""

    def arrive(self, round_: int, attempt: int, slot: int, endpoint: Endpoint) -> RoundPlan | None:
        """Announce readiness for a round; returns its plan, or None if this slot is not a member."""
        ...

    def report(self, round_: int, attempt: int, slot: int, digest: str) -> bool:
        """Report the averaged pseudo-gradient's digest ("" = failed); returns whether the round committed."""
        ...


def _keys(round_: int, attempt: int) -> tuple[str, str, str, str]:
    base = f"{round_}/{attempt}"
    return f"arrive/{base}", f"plan/{base}", f"report/{base}", f"verdict/{base}"


class StoreBarrier:
    """A participant's client of a `RoundCoordinator` (a torch TCPStore on loopback)."""

    def __init__(self, endpoint: Endpoint, timeout_s: float) -> None:
        self.timeout = timedelta(seconds=timeout_s)
        self.store = TCPStore(endpoint[0], endpoint[1], is_master=False, timeout=self.timeout)

    def arrive(self, round_: int, attempt: int, slot: int, endpoint: Endpoint) -> RoundPlan | None:
        arrive, plan_key, _, _ = _keys(round_, attempt)
        self.store.set(f"{arrive}/{slot}", f"{endpoint[0]}:{endpoint[1]}")
        self.store.wait([plan_key], self.timeout)
        raw = json.loads(self.store.get(plan_key))
        if slot not in raw["members"]:
            return None
        return RoundPlan(round_, attempt, tuple(raw["members"]), (raw["master"][0], int(raw["master"][1])))

    def report(self, round_: int, attempt: int, slot: int, digest: str) -> bool:
        _, _, report, verdict = _keys(round_, attempt)
        self.store.set(f"{report}/{slot}", digest)
        self.store.wait([verdict], self.timeout)
        return self.store.get(verdict) == b"commit"


@dataclass
class CommittedRound:
    """One committed round as the coordinator saw it."""

    round: int
    attempts: int
    members: tuple[int, ...]
    digest: str


class RoundCoordinator:
    """A local stand-in for the chain's round barrier (same rules, a TCPStore instead of blocks)."""

    def __init__(
        self, slots: int, arrival_grace_s: float = 5.0, report_timeout_s: float = 60.0, host: str = "127.0.0.1"
    ) -> None:
        self.slots = slots
        self.arrival_grace_s = arrival_grace_s
        self.report_timeout_s = report_timeout_s
        self.store = TCPStore(host, 0, is_master=True, timeout=timedelta(seconds=report_timeout_s))
        self.endpoint: Endpoint = (host, self.store.port)
        self.history: list[CommittedRound] = []
        self.dropped: list[tuple[int, int]] = []
        """(round, slot) of every slot dropped."""
        self._stop = Event()
        self._thread = Thread(target=self._run, name="round-coordinator", daemon=True)

    def __enter__(self) -> RoundCoordinator:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def arrivals(self, round_: int, attempt: int) -> set[int]:
        """Slots that have arrived at one attempt of a round so far."""
        return self._present(_keys(round_, attempt)[0], set(range(self.slots)))

    def _present(self, prefix: str, slots: set[int]) -> set[int]:
        return {s for s in sorted(slots) if self.store.check([f"{prefix}/{s}"])}

    def _arrivals(self, prefix: str, candidates: set[int], expected: set[int]) -> set[int]:
        """Candidates that arrived: wait for the first, then until every expected slot is in or the grace ends."""
        found: set[int] = set()
        while not found and not self._stop.is_set():
            time.sleep(POLL_S)
            found = self._present(prefix, candidates)
        deadline = time.monotonic() + self.arrival_grace_s
        while not expected <= found and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(POLL_S)
            found = self._present(prefix, candidates)
        return found

    def _reports(self, prefix: str, members: set[int]) -> dict[int, bytes]:
        """Members' digests, until all reported, one reported failure, or the report timeout ends."""
        deadline = time.monotonic() + self.report_timeout_s
        reports: dict[int, bytes] = {}
        while time.monotonic() < deadline and not self._stop.is_set():
            for s in self._present(prefix, members - set(reports)):
                reports[s] = self.store.get(f"{prefix}/{s}")
            if set(reports) == members or b"" in reports.values():
                break
            time.sleep(POLL_S)
        return reports

    def _run(self) -> None:
        candidates = expected = set(range(self.slots))
        round_, attempt = 0, 0
        while not self._stop.is_set() and candidates:
            arrive, plan_key, report, verdict = _keys(round_, attempt)
            arrived = self._arrivals(arrive, candidates, expected)
            if not arrived:
                return
            members = sorted(arrived)
            self.dropped += [(round_, s) for s in sorted(candidates - arrived)]
            host, port = self.store.get(f"{arrive}/{members[0]}").decode().rsplit(":", 1)
            self.store.set(plan_key, json.dumps({"members": members, "master": [host, int(port)]}))
            reports = self._reports(report, set(members))
            digests = set(reports.values())
            committed = len(reports) == len(members) and len(digests) == 1 and b"" not in digests
            self.store.set(verdict, "commit" if committed else "retry")
            if committed:
                self.history.append(CommittedRound(round_, attempt + 1, tuple(members), digests.pop().decode()))
                round_, attempt = round_ + 1, 0
                candidates = expected = set(members)
            else:  # every member may come back; one that does not is dropped after the next grace period
                attempt += 1
                candidates = expected = set(members)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free on `host` (for this participant's rendezvous endpoint)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def backend() -> str:
    """NCCL where CUDA is present, gloo on CPU."""
    return "nccl" if torch.cuda.is_available() else "gloo"


@contextmanager
def round_group(plan: RoundPlan, slot: int, timeout_s: float) -> Iterator[str]:
    """The default process group of one attempt (store on a fresh port at the plan's master); yields the backend."""
    n = len(plan.members)
    rank = plan.rank(slot)
    timeout = timedelta(seconds=timeout_s)
    store = TCPStore(
        plan.master[0], plan.master[1], world_size=n, is_master=rank == 0, timeout=timeout, wait_for_workers=False
    )
    name = backend()
    dist.init_process_group(name, store=store, rank=rank, world_size=n, timeout=timeout)
    try:
        yield name
    finally:
        dist.destroy_process_group()


def allreduce_mean(flat: torch.Tensor, plan: RoundPlan, slot: int, timeout_s: float) -> torch.Tensor:
    """The mean of `flat` over the plan's members, in a process group and store (fresh port) for this call only."""
    n = len(plan.members)
    if n == 1:
        return flat.clone()
    with round_group(plan, slot, timeout_s) as name:
        buf = flat.to("cuda") if name == "nccl" else flat.clone()
        dist.all_reduce(buf)
        return (buf / n).cpu()


def committed_round(
    barrier: Barrier, round_: int, slot: int, host: str, collective: Callable[[RoundPlan], tuple[T, str]]
) -> tuple[T, RoundPlan]:
    """Run `collective` (returning a value and its digest) on each attempt's plan until the barrier commits one."""
    for attempt in range(MAX_ATTEMPTS):
        plan = barrier.arrive(round_, attempt, slot, (host, free_port(host)))
        if plan is None:
            raise ExcludedError(f"slot {slot} was dropped before round {round_}")
        try:
            value, digest = collective(plan)
        except (RuntimeError, TimeoutError, OSError):
            value, digest = None, ""
        if barrier.report(round_, attempt, slot, digest) and value is not None:
            return value, plan
    raise RuntimeError(f"round {round_} did not commit in {MAX_ATTEMPTS} attempts")


def ring_bytes(numel: int, members: int, element_size: int = 4) -> int:
    """Bytes one rank sends in a ring all-reduce of `numel` elements."""
    return 2 * (members - 1) * numel * element_size // members


@dataclass(frozen=True)
class WorkerConfig:
    """How one participant runs: its slot, where it may host a rendezvous, its files and timeouts."""

    slot: int
    checkpoint_dir: Path
    host: str = "127.0.0.1"
    threads: int = 1
    """torch's intra-op threads (0: leave them as the process set them, e.g. a node's compute thread)."""
    collective_timeout_s: float = 30.0
    segment_steps: int = 0
    """Proof-of-learning segment length k (0: no proof-of-learning); must divide H."""
    artifact_dir: Path | None = None


@dataclass
class WorkerResult:
    """What a participant ends with (a JSON-able summary)."""

    slot: int
    rounds: list[int] = field(default_factory=list)
    """Rounds this process committed (a resumed worker lists only its own)."""
    train_losses: list[float] = field(default_factory=list)
    """Mean inner loss of each of those rounds."""
    eval_loss: float = float("nan")
    weights_hash: str = ""
    bytes_sent: int = 0
    inner_seconds: float = 0.0
    """CPU seconds of inner steps (process time)."""
    segments: list[str] = field(default_factory=list)
    """Paths of opened proof-of-learning artifacts."""


class DiLoCoWorker:
    """One participant of a DiLoCo job."""

    def __init__(
        self,
        job: JobSpec,
        corpus: Corpus,
        config: WorkerConfig,
        barrier: Barrier,
        should_yield: Callable[[], bool] = lambda: False,
        on_trace: Callable[[int, pol.RoundTrace], None] = lambda _r, _t: None,
        select: Callable[[int, pol.RoundTrace], Sequence[int]] = lambda _r, _t: (),
        compute: Callable[[Callable[[], float]], float] = lambda step: step(),
    ) -> None:
        if config.segment_steps and job.inner_steps % config.segment_steps:
            raise ValueError("segment_steps must divide the inner steps")
        self.job, self.corpus, self.config, self.barrier = job, corpus, config, barrier
        self.should_yield, self.on_trace, self.select, self.compute = should_yield, on_trace, select, compute
        self.model = GPT(job.model, seed=job.model_seed)
        self.names = [n for n, _ in self.model.named_parameters()]
        self.global_params = [p.detach().clone() for p in self.model.parameters()]
        self.outer = torch.optim.SGD(
            self.global_params, lr=job.outer_lr, momentum=job.outer_momentum, nesterov=True, foreach=False
        )
        self.inner = inner_optimizer(self.model.parameters(), job.inner)
        self.next_round = 0
        self.last_loss = float("nan")
        """The mean inner loss of the last round's inner steps."""
        self._resume()

    @property
    def checkpoint_path(self) -> Path:
        return self.config.checkpoint_dir / f"slot{self.config.slot}.pt"

    def _resume(self) -> None:
        """Load the last checkpoint of this slot, if any."""
        if not self.checkpoint_path.exists():
            return
        ckpt = torch.load(self.checkpoint_path, weights_only=True)
        with torch.no_grad():
            for name, g in zip(self.names, self.global_params, strict=True):
                g.copy_(ckpt["global"][name])
        self.outer.load_state_dict(ckpt["outer"])
        self.inner.load_state_dict(ckpt["inner"])
        self.next_round = int(ckpt["next_round"])

    def _checkpoint(self) -> None:
        """Save the state after a committed round (atomically: a crash leaves the previous checkpoint)."""
        self.config.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(
            {
                "next_round": self.next_round,
                "global": dict(zip(self.names, self.global_params, strict=True)),
                "outer": self.outer.state_dict(),
                "inner": self.inner.state_dict(),
            },
            tmp,
        )
        os.replace(tmp, self.checkpoint_path)

    def global_state(self) -> dict[str, torch.Tensor]:
        """The global weights as a model state dict."""
        model = GPT(self.job.model, seed=self.job.model_seed)
        with torch.no_grad():
            for p, g in zip(model.parameters(), self.global_params, strict=True):
                p.copy_(g)
        return model.state_dict()

    def _boundary(self) -> pol.Boundary:
        return pol.Boundary(pol.clone_state(self.model.state_dict()), pol.clone_state(self.inner.state_dict()))

    def _inner_round(self, round_: int, result: WorkerResult) -> tuple[list[pol.Boundary], list[torch.Tensor]]:
        """H inner steps from the global weights; returns PoL boundaries and segment indices (empty without PoL)."""
        job, k = self.job, self.config.segment_steps
        with torch.no_grad():
            for p, g in zip(self.model.parameters(), self.global_params, strict=True):
                p.copy_(g)
        boundaries = [self._boundary()] if k else []
        indices: list[torch.Tensor] = []
        rows: list[torch.Tensor] = []
        losses = []
        for i in range(job.inner_steps):
            while self.should_yield():
                time.sleep(YIELD_SLEEP_S)
            starts = job.step_starts(self.corpus, self.config.slot, round_ * job.inner_steps + i)
            t0 = time.process_time()
            losses.append(self.compute(partial(self.inner_step, starts)))
            result.inner_seconds += time.process_time() - t0
            if k:
                rows.append(starts)
                if len(rows) == k:
                    boundaries.append(self._boundary())
                    indices.append(torch.stack(rows))
                    rows = []
        self.last_loss = sum(losses) / len(losses)
        result.train_losses.append(self.last_loss)
        return boundaries, indices

    def inner_step(self, starts: torch.Tensor) -> float:
        """One inner AdamW step on the windows at `starts` (what a faking participant would skimp on)."""
        return inner_step(self.model, self.inner, self.corpus, starts, self.job.inner.grad_clip)

    def _average(self, round_: int, delta: torch.Tensor, result: WorkerResult) -> torch.Tensor:
        """The round's mean pseudo-gradient, retrying with the survivors until the barrier commits."""
        slot = self.config.slot

        def reduce(plan: RoundPlan) -> tuple[torch.Tensor, str]:
            mean = allreduce_mean(delta, plan, slot, self.config.collective_timeout_s)
            return mean, pol.state_hash(mean)

        mean, plan = committed_round(self.barrier, round_, slot, self.config.host, reduce)
        result.bytes_sent += ring_bytes(delta.numel(), len(plan.members))
        return mean

    def _commit_trace(self, round_: int, boundaries: list[pol.Boundary], indices: list[torch.Tensor]) -> pol.RoundTrace:
        """Commit the round's trace; with the segments' artifacts, before the average (the chain's round report
        carries the trace's hash, and an audit needs the artifacts even if the average fails)."""
        trace = pol.trace(self.config.slot, round_ * self.job.inner_steps, boundaries, indices)
        self.on_trace(round_, trace)
        return trace

    def _open_segments(
        self, round_: int, trace: pol.RoundTrace, boundaries: list[pol.Boundary], indices: list[torch.Tensor]
    ) -> list[str]:
        """Save the artifacts of the segments the beacon picks."""
        first = round_ * self.job.inner_steps
        k = self.config.segment_steps
        out_dir = self.config.artifact_dir or self.config.checkpoint_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in self.select(round_, trace):
            segment = pol.Segment(self.config.slot, first + i * k, indices[i], boundaries[i], boundaries[i + 1])
            path = out_dir / f"slot{self.config.slot}-step{segment.first_step}.pt"
            pol.save_segment(path, segment)
            paths.append(str(path))
        return paths

    def run(self, until_round: int | None = None) -> WorkerResult:
        """Run rounds from the checkpoint up to `until_round` (default: the job's last) and evaluate."""
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        result = WorkerResult(self.config.slot)
        end = self.job.rounds if until_round is None else min(until_round, self.job.rounds)
        while self.next_round < end:
            round_ = self.next_round
            boundaries, indices = self._inner_round(round_, result)
            if self.config.segment_steps:
                trace = self._commit_trace(round_, boundaries, indices)
                result.segments += self._open_segments(round_, trace, boundaries, indices)
            delta = torch.cat(
                [(g - p.detach()).reshape(-1) for g, p in zip(self.global_params, self.model.parameters(), strict=True)]
            )
            mean = self._average(round_, delta, result)
            offset = 0
            for g in self.global_params:
                g.grad = mean[offset : offset + g.numel()].view_as(g).clone()
                offset += g.numel()
            self.outer.step()
            self.outer.zero_grad(set_to_none=True)
            self.next_round = round_ + 1
            self._checkpoint()
            result.rounds.append(round_)
        state = self.global_state()
        result.weights_hash = pol.state_hash(state)
        model = GPT(self.job.model)
        model.load_state_dict(state)
        result.eval_loss = evaluate(model, self.corpus)
        return result


def beacon_select(seed: int, count: int) -> Callable[[int, pol.RoundTrace], Sequence[int]]:
    """A stand-in for the beacon: `count` segments picked by a hash of (seed, round, the committed trace)."""

    def select(round_: int, trace: pol.RoundTrace) -> Sequence[int]:
        h = hashlib.sha256(f"{seed}/{round_}/{'/'.join(trace.weights)}".encode()).digest()
        order = sorted(range(len(trace.data)), key=lambda i: hashlib.sha256(h + i.to_bytes(4, "big")).digest())
        return sorted(order[:count])

    return select


def run_participant(
    job: JobSpec,
    config: WorkerConfig,
    coordinator: Endpoint,
    result_path: Path,
    barrier_timeout_s: float = 120.0,
    until_round: int | None = None,
    open_segments: int = 0,
) -> None:
    """A participant process's entry point: load the data, join through the barrier, train, write the result JSON.

    `open_segments` proof-of-learning segments per round are opened, picked by `beacon_select(job.data_seed, …)`;
    the result holds the round traces the worker committed (under "traces").
    """
    corpus = Corpus.load(job.data)
    barrier = StoreBarrier(coordinator, barrier_timeout_s)
    traces: list[dict[str, object]] = []
    worker = DiLoCoWorker(
        job,
        corpus,
        config,
        barrier,
        on_trace=lambda _r, trace: traces.append(asdict(trace)),
        select=beacon_select(job.data_seed, open_segments),
    )
    result = worker.run(until_round)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**asdict(result), "traces": traces}))
    os.replace(tmp, result_path)
