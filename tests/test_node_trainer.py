"""Training jobs end to end on an embedded chain (issue 14): nodes' `TrainingAgent`s train a DiLoCo job with the
chain as the round barrier, open their audited segments and judge each other's.

The story, on one job of 4 rounds of the `tiny` GPT on the King James Bible, every round audited and
honeypotted:
- P1, P2 and P3 train honestly; P3 stalls in round 2 (it stops computing, as a killed node would) and is dropped at
  the round's deadline; the job goes on with the others;
- P4 fakes its training (it takes every other inner step only, and commits the states it really has): its audited
  segment fails the validators' re-runs, a re-verification by more than half of the weight finds it invalid, and
  it forfeits its rewards and takes part in no further round;
- V1 and V3 judge honestly; V2 passes everything unchecked, so it passes the honeypots and loses its cycle reward;
- V3 joins late, in round 2, and takes part from round 3 with the global state two members serve identically;
- P1, P2 and V3 end with the same weights, and the loss fell.

Race weights: P1-P4 10 each, V1-V3 20 each (nobody mines, so every tally keeps them).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mnemonic import Mnemonic

from racenet.chain.modules.training import (
    MISJUDGED,
    PPM,
    SEGMENTS,
    JobStatus,
    MemberStatus,
    MsgCreateJob,
    MsgJoin,
    Params,
    Participant,
    Segment,
)
from racenet.cli.main import cli
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.node.client import ChainClient
from racenet.node.embedded import EmbeddedNode
from racenet.node.rpc_server import serve_rpc
from racenet.node.sender import TxSender
from racenet.node.trainer import TrainingAgent, initial_weights_hash
from racenet.train import pol
from racenet.train.data import Corpus, source_available
from racenet.train.diloco import DiLoCoWorker
from racenet.train.model import GPT, PRESETS
from racenet.train.steps import evaluate
from tests.chain import beacon_validators, with_beacon
from tests.test_crash import free_port
from tests.test_training_chain import DEV, P1, P2, P3, P4, V1, V2, V3, genesis

pytestmark = pytest.mark.timeout(900)

PARAMS = Params(
    start_blocks=100,  # 20 s: a fast participant finishes round 1 before the job starts, and waits to report it
    round_blocks=150,
    commit_blocks=100,
    verdict_blocks=100,
    dispute_blocks=100,
    audit_ppm=PPM,
    honeypot_ppm=PPM,
    validators_per_segment=3,
)
ROUNDS = 4
BUDGET = 4_000_000


class FakingWorker(DiLoCoWorker):
    """A participant that claims H inner steps but takes only every other one (half the compute)."""

    calls = 0

    def inner_step(self, starts: torch.Tensor) -> float:
        self.calls += 1
        if self.calls % 2 == 0:
            return self.last_loss
        return super().inner_step(starts)


class LazyAgent(TrainingAgent):
    """A validator that passes every segment without fetching or re-running anything."""

    def judge(
        self, job: object, chain_round: int, participant: bytes, segment: Segment, participants: object
    ) -> pol.Verdict:
        return pol.Verdict("")


@pytest.fixture
def chain_url(tmp_path: Path) -> Iterator[tuple[EmbeddedNode, str]]:
    home = tmp_path / "chain"
    (home / "config").mkdir(parents=True)
    g = with_beacon(dataclasses.replace(genesis(PARAMS), genesis_time=int(time.time())))
    g.save(home / "config" / "genesis.json")
    embedded = EmbeddedNode(home, block_time=0.2, validators=beacon_validators(g))
    loop = threading.Thread(target=embedded.run, daemon=True)
    loop.start()
    port = free_port()
    server = serve_rpc(embedded, "127.0.0.1", port)
    try:
        yield embedded, f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        embedded.stop()
        loop.join(timeout=30)
        embedded.close()


def wait(what: str, done: Callable[[], bool], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def run_participant(url: str, seed: bytes, endpoint: str, state: Path, faking: bool, stall: Path) -> None:
    """A participant node's training agent in its own process (torch.distributed has one group per process). Once
    the file `stall` exists it stops computing (and says so in the file `<state>/stalled`). It logs to
    `<state>/agent.log`."""
    key_ = PrivateKey(seed)
    state.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=state / "agent.log", level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def stalled() -> bool:
        if stall.exists():
            (state / "stalled").touch()
            return True
        return False

    agent = TrainingAgent(
        ChainClient(url, timeout=10),
        TxSender(ChainClient(url, timeout=10), key_),
        endpoint,
        state,
        should_yield=stalled,
        worker_class=FakingWorker if faking else DiLoCoWorker,
    )
    agent.run()


def test_a_job_trains_drops_a_stalled_node_catches_a_faker_and_penalizes_a_lazy_validator(
    tmp_path: Path, chain_url: tuple[EmbeddedNode, str]
) -> None:
    if not source_available("bible-kjv"):
        pytest.skip("the Debian package bible-kjv is not installed (make install)")
    _, url = chain_url
    client = ChainClient(url, timeout=10)
    endpoints = {k: f"127.0.0.1:{free_port()}" for k in (P1, P2, P3, P4, V3)}
    stall = tmp_path / "stall-p3"
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(
            target=run_participant,
            args=(url, k.seed, endpoints[k], tmp_path / f"p{n}", k is P4, stall if k is P3 else tmp_path / "never"),
            daemon=True,
        )
        for n, k in enumerate((P1, P2, P3, P4, V3), start=1)
    ]
    validators = {
        k: (LazyAgent if k is V2 else TrainingAgent)(
            ChainClient(url, timeout=10), TxSender(ChainClient(url, timeout=10), k), f"127.0.0.1:{free_port()}",
            tmp_path / f"v{k.public_key.address.hex()[:8]}",
        )
        for k in (V1, V2)
    }  # fmt: skip
    for proc in procs:
        proc.start()
    for agent in validators.values():
        threading.Thread(target=agent.run, daemon=True).start()
    observer = validators[V1]
    try:
        corpus = Corpus.load("bible-kjv")
        create = MsgCreateJob(
            architecture="gpt-tiny",
            weights_hash=initial_weights_hash("tiny"),
            dataset_hash=bytes.fromhex(corpus.digest),
            dataset_location="bible-kjv",
            inner_lr_ppm=3_000,
            inner_steps=16,
            segment_steps=4,
            outer_lr_ppm=700_000,
            outer_momentum_ppm=500_000,
            rounds=ROUNDS,
            max_participants=5,
            budget=BUDGET,
        )
        job_id = int.from_bytes(TxSender(client, DEV).send([create]).data, "big")
        for k in (P1, P2, P3, P4):
            TxSender(client, k).send([MsgJoin(job_id, endpoints[k])])

        def member(k: PrivateKey) -> Participant:
            found = {bytes(p.address): p for p in observer.participants(job_id)}
            return found[k.public_key.address]

        wait("P3 to report round 1", lambda: member(P3).reported_through >= 1)
        stall.touch()
        # V3 joins late, in round 2 (which waits for P3 until its deadline): it takes part from round 3.
        wait("round 2", lambda: getattr(observer.job(job_id), "round", 0) == 2)
        TxSender(client, V3).send([MsgJoin(job_id, endpoints[V3])])
        wait("the job to finish", lambda: getattr(observer.job(job_id), "status", None) == JobStatus.FINISHED)

        statuses = {k: member(k).status for k in (P1, P2, P3, P4)}
        assert statuses == {
            P1: MemberStatus.ACTIVE,
            P2: MemberStatus.ACTIVE,
            P3: MemberStatus.DROPPED,
            P4: MemberStatus.CAUGHT,
        }
        assert member(P1).reported_through == member(P2).reported_through == ROUNDS
        assert member(P3).reported_through == 1
        assert member(V3).status == MemberStatus.ACTIVE and member(V3).from_round == 3
        assert member(V3).reported_through == ROUNDS

        misjudged = {k: client.query(MISJUDGED, k.public_key.address).count for k in (P1, P2, P3, V1, V2, V3)}
        assert misjudged[V2] >= 1 and [misjudged[k] for k in (P1, P2, P3, V1, V3)] == [0] * 5
        assert client.query(SEGMENTS, str(job_id)).segments == ()  # cleared at settlement

        dirs = {k: tmp_path / f"p{n}" / "training" / f"job{job_id}" for n, k in ((1, P1), (2, P2), (5, V3))}
        results = {k: json.loads((d / "result.json").read_text()) for k, d in dirs.items()}
        assert results[P1]["weights_hash"] == results[P2]["weights_hash"] == results[V3]["weights_hash"]
        progress = [json.loads(line) for line in (dirs[P1] / "progress.jsonl").read_text().splitlines()]
        assert [p["round"] for p in progress] == list(range(1, ROUNDS + 1))
        assert progress[-1]["train_loss"] < progress[0]["train_loss"] - 0.5
        initial = evaluate(GPT(PRESETS["tiny"], seed=0), corpus)
        assert results[P1]["eval_loss"] < initial - 0.5
        print(f"\nheld-out loss {initial:.3f} → {results[P1]['eval_loss']:.3f}; rounds {progress}")

        # The command line shows the job and this node's loss curve.
        runner = CliRunner()
        shown = runner.invoke(cli, ["train", "status", str(job_id), "--node", url])
        assert shown.exit_code == 0, shown.output
        assert "finished" in shown.output and "caught" in shown.output and "dropped" in shown.output
        png = tmp_path / "loss.png"
        state = tmp_path / "p1"
        logged = runner.invoke(cli, ["train", "logs", str(job_id), "--state", str(state), "--png", str(png)])
        assert logged.exit_code == 0, logged.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        for agent in validators.values():
            agent.shutdown()
        for proc in procs:
            proc.kill()
            proc.join(10)


def test_train_submit_and_join_on_the_command_line(tmp_path: Path, chain_url: tuple[EmbeddedNode, str]) -> None:
    if not source_available("fortunes"):
        pytest.skip("the Debian package fortunes is not installed (make install)")
    _, url = chain_url
    keyring = Keyring(tmp_path / "keyring")
    for name, k in (("dev", DEV), ("p1", P1)):
        keyring.import_mnemonic(name, Mnemonic("english").to_mnemonic(k.seed), "")
    runner = CliRunner(env={"RACENET_PASSPHRASE": "", "RACENET_HOME": None})
    args = ["--home", str(tmp_path), "--node", url]
    submitted = runner.invoke(
        cli, ["train", "submit", "1000nicoin", "--from", "dev", "--data", "fortunes", "--json", *args]
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["job"]
    joined = runner.invoke(cli, ["train", "join", str(job_id), "--from", "p1", "--endpoint", "127.0.0.1:1", *args])
    assert joined.exit_code == 0, joined.output
    proposed = runner.invoke(cli, ["train", "submit", "1000nicoin", "--from", "dev", "--grant", "--json", *args])
    assert proposed.exit_code == 0, proposed.output
    assert json.loads(proposed.stdout)["proposal_id"] == 1
    listed = runner.invoke(cli, ["train", "status", "--node", url, "--json"])
    (job,) = json.loads(listed.stdout)
    assert job["dataset_location"] == "fortunes" and job["budget"] == 1000
    for bad, message in (
        (["train", "submit", "1000nicoin", "--from", "dev", "--data", "/no/such/file", *args], "cannot read"),
        (["train", "submit", "lots", "--from", "dev", *args], "amount"),
        (["train", "submit", "10nicoin", "--from", "dev", "--segment-steps", "3", *args], "divide"),
        (["train", "join", str(job_id), "--from", "p1", "--endpoint", "no-port", *args], "port"),
        (["train", "status", "99", "--node", url], "no training job 99"),
    ):
        result = runner.invoke(cli, bad)
        assert result.exit_code != 0 and message in result.output, (bad, result.output)
        assert "Traceback" not in result.output
