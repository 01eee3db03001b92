"""A provider's part in training jobs (issue 14; whitepaper §8, Appendix L), with the chain as coordinator.

`TrainingAgent` watches the `training` module and, for this node:

- **trains** every job it joined: a `DiLoCoWorker` whose round barrier is the chain (`ChainBarrier`). After its H
  inner steps a participant reports the round with the hash of its round trace (`training/RoundDone`); once the
  round has closed, the members that reported it (`from_round <= round <= reported_through`) average their
  pseudo-gradients with torch.distributed, ranked by address. The first hosts the round's store and serves its
  port at its endpoint. A member that stopped (killed, offline) did not report and was dropped: the round closes
  at its deadline and the others average without it.
- **opens** the segment the beacon picks in an audited round (`training/CommitSegment`): it keeps every segment
  artifact of its rounds and serves them, with its round traces, at its endpoint.
- **judges** the segments it is drawn to check and every re-verification it may vote in: it fetches the trace and
  the artifact from the participant's endpoint, checks them against the chain's hashes, re-runs the segment
  (`racenet.train.pol.verify_segment`) and votes (`training/PolVerdict`). An artifact that cannot be fetched is
  invalid: a participant must serve its artifacts until the job settles (a honeypot's address serves nothing).

A job's model is `gpt-<preset>` of `racenet.train.model` with the preset's canonical initial weights (seed 0; the
job names their hash), its data a Debian source or a file whose SHA-256 the job names; the data seed comes from
the chain id and the job id, a participant's shard from its place in join order. A node refuses a job it cannot
reproduce exactly (other weights, other data). A late joiner starts from the global weights and outer optimizer
state that at least two members of the last closed round serve identically (each member serves its checkpoint).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import torch
import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

from racenet.chain.modules import training
from racenet.chain.modules.training import (
    Job,
    JobStatus,
    MemberStatus,
    MsgCommitSegment,
    MsgPolVerdict,
    MsgRoundDone,
    Participant,
    Segment,
    SegmentStatus,
)
from racenet.chain.modules.training.types import check_endpoint
from racenet.node.client import ChainClient, ClientError, TxRejected
from racenet.node.compute import ComputeThread
from racenet.node.sender import TxSender
from racenet.train import pol
from racenet.train.data import Corpus
from racenet.train.diloco import DiLoCoWorker, Endpoint, ExcludedError, RoundPlan, WorkerConfig, free_port
from racenet.train.model import GPT, PRESETS
from racenet.train.steps import InnerConfig, JobSpec, inner_optimizer

log = logging.getLogger(__name__)

ARCHITECTURE_PREFIX = "gpt-"
MODEL_SEED = 0
"""The initial weights of a job's model: `GPT(preset, seed=MODEL_SEED)`; the job names their hash."""
PPM = 1_000_000
POLL_S = 1.0
HTTP_TIMEOUT_S = 10.0
COLLECTIVE_TIMEOUT_S = 60.0
ROUND_CLOSE_TIMEOUT_S = 900.0
"""How long a participant waits for its round to close on chain before giving up on the job."""
MAX_TRACE_BYTES = 1 << 20
MAX_ARTIFACT_BYTES = 256 << 20
FETCH_ATTEMPTS = 3
LIVE = (JobStatus.WAITING, JobStatus.RUNNING)
T = TypeVar("T")
DATA_SEED_DOMAIN = b"racenet/training/data-seed/v1\x00"


class JobUnsupportedError(ValueError):
    """This node cannot reproduce the job exactly (unknown architecture, other initial weights or data)."""


def preset_of(architecture: str) -> str:
    """The model preset a job's architecture names (`gpt-tiny` → `tiny`)."""
    preset = architecture.removeprefix(ARCHITECTURE_PREFIX)
    if not architecture.startswith(ARCHITECTURE_PREFIX) or preset not in PRESETS:
        raise JobUnsupportedError(f"unknown architecture {architecture!r}: use gpt-{' or gpt-'.join(PRESETS)}")
    return preset


def initial_weights_hash(preset: str) -> bytes:
    """The hash of a preset's canonical initial weights (what `training/CreateJob` names)."""
    return bytes.fromhex(pol.state_hash(GPT(PRESETS[preset], seed=MODEL_SEED).state_dict()))


def data_seed(chain_id: str, job_id: int) -> int:
    """The seed of a job's data windows: nobody picks it, everybody can recompute it."""
    digest = hashlib.sha256(DATA_SEED_DOMAIN + chain_id.encode() + job_id.to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def job_spec(job: Job, chain_id: str) -> JobSpec:
    """The engine's record of a chain job (its hyperparameters from integers; shards = its seats)."""
    preset = preset_of(job.architecture)
    if job.weights_hash != initial_weights_hash(preset):
        raise JobUnsupportedError(f"job {job.id}'s initial weights are not {job.architecture}'s canonical ones")
    return JobSpec(
        model=PRESETS[preset],
        model_seed=MODEL_SEED,
        data=job.dataset_location,
        data_seed=data_seed(chain_id, job.id),
        shards=job.max_participants,
        rounds=job.rounds,
        inner_steps=job.inner_steps,
        inner=InnerConfig(lr=job.inner_lr_ppm / PPM),
        outer_lr=job.outer_lr_ppm / PPM,
        outer_momentum=job.outer_momentum_ppm / PPM,
    )


def load_corpus(job: Job) -> Corpus:
    """The job's training text, checked against the hash the job names."""
    corpus = Corpus.load(job.dataset_location)
    if corpus.digest != job.dataset_hash.hex():
        raise JobUnsupportedError(f"job {job.id}'s data {job.dataset_location!r} has another hash here")
    return corpus


def slots(participants: tuple[Participant, ...]) -> dict[bytes, int]:
    """Each participant's shard: its place in join order (height, then address), which later joins never change."""
    ordered = sorted(participants, key=lambda p: (p.joined_height, bytes(p.address)))
    return {bytes(p.address): i for i, p in enumerate(ordered)}


def reporters(participants: tuple[Participant, ...], round_: int) -> list[Participant]:
    """The members that reported a closed round, in address order (its averaging group's ranks)."""
    found = [p for p in participants if p.from_round <= round_ <= p.reported_through]
    return sorted(found, key=lambda p: bytes(p.address))


def host_port(endpoint: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` split."""
    host, port = endpoint.rsplit(":", 1)
    return host.strip("[]"), int(port)


def url(endpoint: str) -> str:
    """The HTTP base of a participant's endpoint."""
    return f"http://{endpoint}/racenet/v1/training"


class ChainBarrier:
    """The engine's round barrier on chain: report the round, wait for it to close, average with its reporters.

    Engine round i is the chain's round i + 1 (the chain counts from 1).
    """

    def __init__(self, agent: TrainingAgent, job_id: int) -> None:
        self.agent, self.job_id = agent, job_id
        self.commitments: dict[int, bytes] = {}

    def arrive(self, round_: int, attempt: int, slot: int, endpoint: Endpoint) -> RoundPlan | None:
        """Report the round (first attempt), wait until it closed, and plan the average among its reporters."""
        chain_round = round_ + 1
        if attempt == 0:
            self.agent.report_round(self.job_id, chain_round, self.commitments[round_])
        if not self.agent.wait_round_closed(self.job_id, chain_round):
            return None
        participants = self.agent.participants(self.job_id)
        group = reporters(participants, chain_round)
        if self.agent.address not in [bytes(p.address) for p in group]:
            return None
        by_slot = slots(participants)
        members = tuple(by_slot[bytes(p.address)] for p in group)
        master = group[0]
        if bytes(master.address) == self.agent.address:
            host = host_port(master.endpoint)[0]
            port = self.agent.open_rendezvous(self.job_id, round_, attempt)
        else:
            host, port = (
                host_port(master.endpoint)[0],
                self.agent.rendezvous_of(master.endpoint, self.job_id, round_, attempt),
            )
        return RoundPlan(round_, attempt, members, (host, port))

    def report(self, round_: int, attempt: int, slot: int, digest: str) -> bool:
        """The chain's round closed already: the average committed if it succeeded here."""
        return digest != ""


@dataclass
class Progress:
    """A job's training as this node saw it (the `racenet train logs` file)."""

    round: int
    train_loss: float
    seconds: float


def read_progress(job_dir: Path) -> list[Progress]:
    """The rounds a node trained of a job, from its `progress.jsonl` in `job_dir` (none if it trained none)."""
    path = job_dir / "progress.jsonl"
    if not path.exists():
        return []
    return [Progress(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


class TrainingAgent:
    """Trains the jobs this node joined, opens its audited segments and judges the segments drawn to it."""

    def __init__(
        self,
        client: ChainClient,
        sender: TxSender,
        endpoint: str,
        state_dir: Path,
        compute: ComputeThread | None = None,
        should_yield: Callable[[], bool] = lambda: False,
        worker_class: type[DiLoCoWorker] = DiLoCoWorker,
    ) -> None:
        check_endpoint(endpoint)
        self.client, self.sender, self.endpoint = client, sender, endpoint
        self.address = sender.key.public_key.address
        self.dir = state_dir / "training"
        self.compute, self.should_yield, self.worker_class = compute, should_yield, worker_class
        self.http = httpx.Client(timeout=HTTP_TIMEOUT_S)
        self.stop = threading.Event()
        self.workers: dict[int, threading.Thread] = {}
        self.voted: set[tuple[int, int, bytes]] = set()
        self.rendezvous: dict[tuple[int, int, int], int] = {}
        self.corpora: dict[int, Corpus] = {}
        self.chain_id = sender.chain_id or client.chain_id()
        self.host, port = host_port(endpoint)
        self.server = uvicorn.Server(uvicorn.Config(self.app(), self.host, port, log_level="warning"))

    def job_dir(self, job_id: int) -> Path:
        """Where this node keeps a job's checkpoints, traces, artifacts and progress."""
        return self.dir / f"job{job_id}"

    # --- the endpoint other participants and validators read ---------------------------------------

    def app(self) -> FastAPI:
        """The HTTP API at this node's training endpoint: rendezvous ports, round traces and segment artifacts."""
        app = FastAPI(title="racenet training endpoint")

        @app.get("/racenet/v1/training/{job_id}/rendezvous/{round_}/{attempt}")
        def rendezvous(job_id: int, round_: int, attempt: int) -> JSONResponse:
            port = self.rendezvous.get((job_id, round_, attempt))
            if port is None:
                return JSONResponse({"error": "no rendezvous for this round yet"}, status_code=404)
            return JSONResponse({"port": port})

        @app.get("/racenet/v1/training/{job_id}/traces/{chain_round}")
        def trace(job_id: int, chain_round: int) -> Any:
            path = self.job_dir(job_id) / "traces" / f"{chain_round}.json"
            if not path.exists():
                return JSONResponse({"error": "no trace of this round here"}, status_code=404)
            return FileResponse(path, media_type="application/json")

        @app.get("/racenet/v1/training/{job_id}/checkpoint")
        def checkpoint(job_id: int) -> Any:
            found = sorted((self.job_dir(job_id) / "checkpoints").glob("slot*.pt"))
            if not found:
                return JSONResponse({"error": "no checkpoint of this job here"}, status_code=404)
            return FileResponse(found[0], media_type="application/octet-stream")

        @app.get("/racenet/v1/training/{job_id}/artifacts/{first_step}")
        def artifact(job_id: int, first_step: int) -> Any:
            found = sorted((self.job_dir(job_id) / "artifacts").glob(f"slot*-step{first_step}.pt"))
            if not found:
                return JSONResponse({"error": "no artifact of this segment here"}, status_code=404)
            return FileResponse(found[0], media_type="application/octet-stream")

        return app

    def open_rendezvous(self, job_id: int, round_: int, attempt: int) -> int:
        """A free port for this round's store, served to the other members (this node is rank 0)."""
        port = free_port(self.host)
        self.rendezvous[(job_id, round_, attempt)] = port
        return port

    def rendezvous_of(self, endpoint: str, job_id: int, round_: int, attempt: int) -> int:
        """The store port rank 0 serves for a round (polled until it has one, or the collective timeout)."""
        deadline = time.monotonic() + COLLECTIVE_TIMEOUT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                response = self.http.get(f"{url(endpoint)}/{job_id}/rendezvous/{round_}/{attempt}")
                if response.status_code == 200:
                    return int(response.json()["port"])
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"no rendezvous from {endpoint} for round {round_ + 1}")

    # --- the chain -------------------------------------------------------------------------------

    def patiently(self, call: Callable[[], T]) -> T:
        """`call`, retried while the node cannot be reached (a busy node times out) for up to
        ROUND_CLOSE_TIMEOUT_S; a refused transaction is not retried."""
        deadline = time.monotonic() + ROUND_CLOSE_TIMEOUT_S
        while True:
            try:
                return call()
            except TxRejected:
                raise
            except ClientError as e:
                if time.monotonic() > deadline or self.stop.is_set():
                    raise TimeoutError(f"the chain stayed unreachable: {e}") from e
                log.info("training: the chain is slow to answer (%s); retrying", e)
                time.sleep(POLL_S)

    def job(self, job_id: int) -> Job | None:
        """A job as the chain has it now."""
        return self.patiently(lambda: self.client.query(training.JOB, str(job_id)))

    def participants(self, job_id: int) -> tuple[Participant, ...]:
        """A job's participants as the chain has them now."""
        return self.patiently(lambda: self.client.query(training.PARTICIPANTS, str(job_id)).participants)

    def report_round(self, job_id: int, chain_round: int, commitment: bytes) -> None:
        """Send `training/RoundDone` once the chain's round is open (a fast node may finish round 1 before the job
        starts), unless the chain has it already (a resumed worker may have sent it)."""
        if not self.wait_round_open(job_id, chain_round):
            return
        me = {bytes(p.address): p for p in self.participants(job_id)}.get(self.address)
        if me is not None and me.reported_through >= chain_round:
            return
        try:
            self.patiently(lambda: self.sender.send([MsgRoundDone(job_id, chain_round, commitment)]))
        except TxRejected as e:
            log.warning("job %d round %d: report refused: %s", job_id, chain_round, e)

    def wait_round_open(self, job_id: int, chain_round: int) -> bool:
        """Wait until the chain's current round of a job is `chain_round` or later; False if the job stopped
        (cancelled) or the wait timed out."""
        deadline = time.monotonic() + ROUND_CLOSE_TIMEOUT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            job = self.job(job_id)
            if job is None or job.status == JobStatus.CANCELLED:
                return False
            if job.status != JobStatus.WAITING and job.round >= chain_round:
                return True
            time.sleep(POLL_S / 2)
        return False

    def wait_round_closed(self, job_id: int, chain_round: int) -> bool:
        """Wait until the chain closed a round; False if the job stopped (cancelled) or the wait timed out."""
        deadline = time.monotonic() + ROUND_CLOSE_TIMEOUT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            job = self.job(job_id)
            if job is None or job.status == JobStatus.CANCELLED:
                return False
            if job.round > chain_round or job.status in (JobStatus.SETTLING, JobStatus.FINISHED):
                return True
            time.sleep(POLL_S / 2)
        return False

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve the endpoint and act on the chain until stopped."""
        threading.Thread(target=self.server.run, name="training-endpoint", daemon=True).start()
        while not self.stop.is_set():
            try:
                self.poll()
            except (ClientError, httpx.HTTPError) as e:
                log.warning("training: chain unavailable: %s", e)
            self.stop.wait(POLL_S)

    def shutdown(self) -> None:
        """Stop polling, the workers' waits and the endpoint."""
        self.stop.set()
        self.server.should_exit = True

    def poll(self) -> None:
        """One look at every job: start trainers, open audited segments, judge what this node owes."""
        for job in self.client.query(training.JOBS).jobs:
            if job.status in (JobStatus.FINISHED, JobStatus.CANCELLED):
                continue
            participants = self.participants(job.id)
            mine = {bytes(p.address): p for p in participants}.get(self.address)
            if mine is not None and mine.status == MemberStatus.ACTIVE and job.status in LIVE:
                self._ensure_worker(job, mine)
            segments = self.client.query(training.SEGMENTS, str(job.id)).segments
            for info in segments:
                participant = bytes(info.participant)
                if participant == self.address and info.segment.status == SegmentStatus.AWAITING:
                    self._commit_segment(job, info.round, info.segment)
                elif self._owes_verdict(participant, info.segment):
                    self._vote(job, info.round, participant, info.segment, participants)

    def _owes_verdict(self, participant: bytes, segment: Segment) -> bool:
        if participant == self.address:
            return False
        if segment.status == SegmentStatus.COMMITTED:
            return self.address in [bytes(v) for v in segment.validators]
        return segment.status == SegmentStatus.DISPUTED

    # --- training --------------------------------------------------------------------------------

    def _ensure_worker(self, job: Job, mine: Participant) -> None:
        thread = self.workers.get(job.id)
        if thread is not None or (self.job_dir(job.id) / "result.json").exists():
            return
        thread = threading.Thread(target=self._train, args=(job, mine), name=f"train-{job.id}", daemon=True)
        self.workers[job.id] = thread
        thread.start()

    def _train(self, job: Job, mine: Participant) -> None:
        """Run a job's rounds from this node's checkpoint; write its result (or why it stopped)."""
        out = self.job_dir(job.id)
        try:
            spec = job_spec(job, self.chain_id)
            corpus = self.corpus(job)
            slot = slots(self.participants(job.id))[self.address]
            if mine.from_round > 1 and not (out / "checkpoints").exists():
                self._take_global_state(job, mine.from_round - 1, spec, out / "checkpoints" / f"slot{slot}.pt")
            barrier = ChainBarrier(self, job.id)
            (out / "traces").mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            worker = self.worker_class(
                spec,
                corpus,
                WorkerConfig(
                    slot,
                    out / "checkpoints",
                    host=self.host,
                    threads=0,
                    collective_timeout_s=COLLECTIVE_TIMEOUT_S,
                    segment_steps=job.segment_steps,
                    artifact_dir=out / "artifacts",
                ),
                barrier,
                should_yield=self.should_yield,
                on_trace=lambda r, t: self._keep_trace(job.id, r, t, barrier, worker.last_loss, started),
                select=lambda _r, t: range(len(t.data)),
                compute=self.compute.run if self.compute is not None else lambda step: step(),
            )
            result = worker.run()
            summary = {"eval_loss": result.eval_loss, "weights_hash": result.weights_hash, "rounds": result.rounds}
        except (ExcludedError, JobUnsupportedError, RuntimeError, TimeoutError, OSError) as e:
            log.warning("training job %d stopped here: %s", job.id, e)
            summary = {"stopped": str(e)}
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "result.json", summary)

    def _take_global_state(self, job: Job, closed_round: int, spec: JobSpec, path: Path) -> None:
        """A late joiner's start: the global weights and outer optimizer after `closed_round`, fetched from that
        round's reporters, taken only if at least two of them (or the only one) serve the same state."""
        if not self.wait_round_closed(job.id, closed_round):
            raise JobUnsupportedError(f"round {closed_round} of job {job.id} never closed")
        group = reporters(self.participants(job.id), closed_round)
        needed = min(2, len(group))
        deadline = time.monotonic() + COLLECTIVE_TIMEOUT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            states: dict[str, dict[str, Any]] = {}
            votes: dict[str, int] = {}
            for member in group:
                state = self._checkpoint_of(member.endpoint, job.id, closed_round)
                if state is not None:
                    digest = pol.state_hash(state)
                    states[digest], votes[digest] = state, votes.get(digest, 0) + 1
            agreed = [d for d, n in votes.items() if n >= needed]
            if agreed:
                model = GPT(spec.model, seed=spec.model_seed)
                fresh_inner = inner_optimizer(model.parameters(), spec.inner).state_dict()
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save({**states[agreed[0]], "next_round": closed_round, "inner": fresh_inner}, path)
                log.info("job %d: joining from round %d with the members' global state", job.id, closed_round + 1)
                return
            time.sleep(POLL_S)
        raise TimeoutError(f"no two members of job {job.id} served the same state after round {closed_round}")

    def _checkpoint_of(self, endpoint: str, job_id: int, closed_round: int) -> dict[str, Any] | None:
        """A member's global weights and outer optimizer state after a chain round, if it serves that checkpoint."""
        raw = self._fetch(f"{url(endpoint)}/{job_id}/checkpoint", MAX_ARTIFACT_BYTES)
        if raw is None:
            return None
        try:
            ckpt = torch.load(io.BytesIO(raw), weights_only=True)
            if int(ckpt["next_round"]) != closed_round:  # engine rounds count from 0: next is chain round + 1
                return None
            return {"global": ckpt["global"], "outer": ckpt["outer"]}
        except Exception:  # an untrusted file: anything torch.load raises means a malformed checkpoint
            return None

    def _keep_trace(
        self, job_id: int, round_: int, trace: pol.RoundTrace, barrier: ChainBarrier, loss: float, started: float
    ) -> None:
        """Keep a round's trace (served to validators), its commitment (the round report carries it) and its loss."""
        out = self.job_dir(job_id)
        _write_json(out / "traces" / f"{round_ + 1}.json", asdict(trace))
        barrier.commitments[round_] = trace.commitment()
        with (out / "progress.jsonl").open("a") as f:
            f.write(json.dumps(asdict(Progress(round_ + 1, loss, time.monotonic() - started))) + "\n")

    def corpus(self, job: Job) -> Corpus:
        """A job's data, loaded once."""
        if job.id not in self.corpora:
            self.corpora[job.id] = load_corpus(job)
        return self.corpora[job.id]

    # --- proof-of-learning -----------------------------------------------------------------------

    def _commit_segment(self, job: Job, chain_round: int, segment: Segment) -> None:
        """Open the segment the beacon chose: its hashes from this node's committed trace of the round."""
        path = self.job_dir(job.id) / "traces" / f"{chain_round}.json"
        if not path.exists():
            log.warning("job %d round %d: audited, but this node kept no trace of the round", job.id, chain_round)
            return
        trace = pol.RoundTrace.from_json(json.loads(path.read_text()))
        i = segment.step // job.segment_steps
        msg = MsgCommitSegment(
            job_id=job.id,
            round=chain_round,
            step=segment.step,
            prev_weights_hash=bytes.fromhex(trace.weights[i]),
            weights_hash=bytes.fromhex(trace.weights[i + 1]),
            optimizer_hash=bytes.fromhex(trace.optimizers[i + 1]),
            data_indices_hash=bytes.fromhex(trace.data[i]),
        )
        try:
            self.patiently(lambda: self.sender.send([msg]))
            log.info("job %d round %d: opened the segment at step %d", job.id, chain_round, segment.step)
        except TxRejected as e:
            log.warning("job %d round %d: segment refused: %s", job.id, chain_round, e)

    def _vote(
        self, job: Job, chain_round: int, participant: bytes, segment: Segment, participants: tuple[Participant, ...]
    ) -> None:
        key = (job.id, chain_round, participant)
        if key in self.voted:  # a drawn validator's verdict also counts in the re-verification it opens
            return
        verdict = self.judge(job, chain_round, participant, segment, participants)
        log.info(
            "job %d round %d: segment of %s %s%s",
            job.id,
            chain_round,
            participant.hex()[:12],
            "passes" if verdict.passed else "fails: ",
            verdict.reason,
        )
        try:
            self.patiently(lambda: self.sender.send([MsgPolVerdict(job.id, chain_round, participant, verdict.passed)]))
        except TxRejected as e:
            log.warning("job %d round %d: verdict refused: %s", job.id, chain_round, e)
        self.voted.add(key)

    def judge(
        self, job: Job, chain_round: int, participant: bytes, segment: Segment, participants: tuple[Participant, ...]
    ) -> pol.Verdict:
        """This node's finding on a committed segment: its artifacts fetched, checked against the chain, re-run."""
        member = {bytes(p.address): p for p in participants}.get(participant)
        if member is None:
            return pol.Verdict("not a participant of the job: it serves no artifacts")
        try:
            spec, corpus = job_spec(job, self.chain_id), self.corpus(job)
        except (JobUnsupportedError, OSError) as e:
            return pol.Verdict(f"the job cannot be reproduced here: {e}")
        raw = self._fetch(f"{url(member.endpoint)}/{job.id}/traces/{chain_round}", MAX_TRACE_BYTES)
        if raw is None:
            return pol.Verdict("the round trace cannot be fetched")
        try:
            trace = pol.RoundTrace.from_json(json.loads(raw))
            commitment = trace.segment(segment.step // job.segment_steps)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            return pol.Verdict(f"malformed trace: {e}")
        if trace.commitment() != segment.trace:
            return pol.Verdict("the trace is not the one the round report committed")
        if trace.shard != slots(participants)[participant] or trace.segment_steps != job.segment_steps:
            return pol.Verdict("the trace is not of the participant's shard or the job's segment length")
        on_chain = (segment.prev_weights_hash, segment.weights_hash, segment.optimizer_hash, segment.data_indices_hash)
        claimed = (commitment.prev_weights, commitment.weights, commitment.optimizer, commitment.data)
        if on_chain != tuple(bytes.fromhex(h) for h in claimed):
            return pol.Verdict("the committed hashes are not the trace's")
        first_step = (chain_round - 1) * job.inner_steps + segment.step
        if commitment.first_step != first_step:
            return pol.Verdict("the trace's segment starts at another step")
        artifact = self._fetch(f"{url(member.endpoint)}/{job.id}/artifacts/{first_step}", MAX_ARTIFACT_BYTES)
        if artifact is None:
            return pol.Verdict("the segment's artifact cannot be fetched")
        return self._rerun(spec, corpus, commitment, artifact)

    def _rerun(self, spec: JobSpec, corpus: Corpus, commitment: pol.SegmentCommitment, artifact: bytes) -> pol.Verdict:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "segment.pt"
            path.write_bytes(artifact)
            try:
                segment = pol.load_segment(path)
            except Exception as e:  # an untrusted file: anything torch.load raises means a malformed artifact
                return pol.Verdict(f"malformed artifact: {type(e).__name__}")

        def verify() -> pol.Verdict:
            return pol.verify_segment(spec, corpus, commitment, segment)

        return self.compute.run(verify) if self.compute is not None else verify()

    def _fetch(self, address: str, limit: int) -> bytes | None:
        """A participant's file, at most `limit` bytes, retried; None if it cannot be had."""
        for attempt in range(FETCH_ATTEMPTS):
            try:
                with self.http.stream("GET", address) as response:
                    if response.status_code != 200:
                        return None
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > limit:
                            return None
                    return bytes(body)
            except httpx.HTTPError:
                time.sleep(1.0 + attempt)
        return None


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
