"""A DiLoCo job on a 6-validator devnet (real CometBFT), coordinated on chain (issue 14).

Nobody races (every compute budget is 0), so the genesis weights stay: 1/6 each. A governance proposal, voted by
every node, audits every round and plants a honeypot in each. Then a job trains the `tiny` GPT on the King James
Bible for 6 rounds with four participants, each a node's training agent in its own process:
- nodes 1-3 train honestly; node 3 is SIGKILLed mid-job (while it computes a round it has not reported), after
  which the job goes on and finishes with nodes 1 and 2, whose loss fell and whose final weights are identical;
- node 4 fakes its training (every other inner step only): proof-of-learning catches it and it forfeits;
- nodes 5 and 6 judge the segments they are drawn for; node 5 honestly, node 6 passes everything unchecked, so
  it passes the honeypots and loses its cycle reward.
The faker is caught before node 3 is killed: a re-verification needs more than half of the weight to decide.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from racenet.chain.modules import training
from racenet.chain.modules.gov import MsgVote, VoteOption
from racenet.chain.modules.training import JobStatus, MemberStatus, MsgJoin, Participant
from racenet.cli.main import cli
from racenet.crypto.keyring import Keyring
from racenet.devnet import DEVNET_PASSPHRASE, FAUCET_KEY, Devnet
from racenet.node.client import ChainClient
from racenet.node.sender import TxSender
from racenet.node.trainer import TrainingAgent
from racenet.train.data import source_available
from tests.network.conftest import running_devnet
from tests.test_crash import free_port
from tests.test_node_trainer import LazyAgent, run_participant

pytestmark = [pytest.mark.network, pytest.mark.timeout(1500)]

NODES = 6
ROUNDS = 6
PARAMS = {
    "start_blocks": 40,
    "round_blocks": 120,
    "commit_blocks": 60,
    "verdict_blocks": 60,
    "dispute_blocks": 60,
    "audit_ppm": 1_000_000,
    "honeypot_ppm": 1_000_000,
    "validators_per_segment": 2,
    "max_rounds": 10_000,
    "max_participants": 64,
}


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_devnet(tmp_path_factory, "training", ",".join(["0"] * NODES), validators=NODES) as directory:
        yield directory


def wait(what: str, done: Callable[[], bool], timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1.0)


def cli_ok(directory: Path, node_url: str, *args: str) -> str:
    env = {"RACENET_PASSPHRASE": DEVNET_PASSPHRASE, "RACENET_HOME": None}
    result = CliRunner(env=env).invoke(cli, [*args, "--home", str(directory), "--node", node_url])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_devnet_trains_survives_a_killed_participant_catches_a_faker_and_penalizes_a_lazy_validator(
    net_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not source_available("bible-kjv"):
        pytest.skip("the Debian package bible-kjv is not installed (make install)")
    caplog.set_level(logging.INFO, logger="racenet.node.trainer")  # the validators' agents, shown on failure
    net = Devnet.open(net_dir)
    nodes = net.state.nodes
    url = nodes[0].rpc_url
    client = ChainClient(url, timeout=10)
    keyring = Keyring(net_dir / "keyring")
    keys = [keyring.load(n.name, DEVNET_PASSPHRASE) for n in nodes]

    # Governance: every round audited, with a honeypot.
    changes = tmp_path / "training-params.json"
    changes.write_text(json.dumps(PARAMS))
    submitted = cli_ok(
        net_dir, url, "gov", "submit", "params", "training", str(changes), "--from", FAUCET_KEY, "--json"
    )
    proposal = int(json.loads(submitted)["proposal_id"])
    for k in keys:  # all in the next blocks: the devnet's voting period is 20 blocks
        TxSender(client, k).broadcast([MsgVote(proposal, VoteOption.YES)])
    wait("the proposal to pass", lambda: client.query(training.PARAMS).audit_ppm == 1_000_000, timeout=300)

    # The participants' agents, each in its own process, and the validators' in this one.
    endpoints = [f"127.0.0.1:{free_port()}" for _ in range(4)]
    stall = tmp_path / "stall-node3"
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(
            target=run_participant,
            args=(
                nodes[i].rpc_url, bytes(keys[i].seed), endpoints[i], tmp_path / f"node{i + 1}", i == 3,
                stall if i == 2 else tmp_path / "never",
            ),
            daemon=True,
        )
        for i in range(4)
    ]  # fmt: skip
    validators = [
        kind(
            ChainClient(nodes[i].rpc_url, timeout=10),
            TxSender(ChainClient(nodes[i].rpc_url, timeout=10), keys[i]),
            f"127.0.0.1:{free_port()}",
            tmp_path / f"node{i + 1}",
        )
        for i, kind in ((4, TrainingAgent), (5, LazyAgent))
    ]
    for proc in procs:
        proc.start()
    for agent in validators:
        threading.Thread(target=agent.run, daemon=True).start()
    try:
        submitted = cli_ok(
            net_dir, url, "train", "submit", "4icon", "--from", FAUCET_KEY, "--rounds", str(ROUNDS),
            "--inner-steps", "32", "--segment-steps", "4", "--max-participants", "4", "--json",
        )  # fmt: skip
        job_id = json.loads(submitted)["job"]
        # Node 1 joins on the command line, the others at the same time (the job starts 40 blocks after its creation).
        for i in (1, 2, 3):
            TxSender(client, keys[i]).broadcast([MsgJoin(job_id, endpoints[i])])
        cli_ok(net_dir, url, "train", "join", str(job_id), "--from", nodes[0].name, "--endpoint", endpoints[0])

        def member(i: int) -> Participant:
            found = {bytes(p.address): p for p in client.query(training.PARTICIPANTS, str(job_id)).participants}
            return found[keys[i].public_key.address]

        wait("the faker to be caught", lambda: member(3).status == MemberStatus.CAUGHT)
        job = client.query(training.JOB, str(job_id))
        assert job is not None and job.status == JobStatus.RUNNING and job.round < ROUNDS, "no round left to kill in"

        # Kill node 3 while it computes a round it has not reported: it stalls there first, then dies.
        stall.touch()
        wait("node 3 to stall", (tmp_path / "node3" / "stalled").exists, timeout=300)
        procs[2].kill()
        killed_after = member(2).reported_through

        def finished() -> bool:
            job = client.query(training.JOB, str(job_id))
            return job is not None and job.status == JobStatus.FINISHED

        wait("the job to finish", finished, timeout=1200)
        assert member(0).status == member(1).status == MemberStatus.ACTIVE
        assert member(0).reported_through == member(1).reported_through == ROUNDS
        # Dropped at the round's deadline; caught instead if an audit of an earlier round asked it to open a segment
        # after it died (a participant must serve its artifacts until the job settles).
        assert member(2).status != MemberStatus.ACTIVE and member(2).reported_through == killed_after < ROUNDS
        assert member(3).status == MemberStatus.CAUGHT and member(3).held == 0

        job_dirs = [tmp_path / f"node{i}" / "training" / f"job{job_id}" for i in (1, 2)]
        results = [json.loads((d / "result.json").read_text()) for d in job_dirs]
        assert results[0]["weights_hash"] == results[1]["weights_hash"]
        progress = [json.loads(line) for line in (job_dirs[0] / "progress.jsonl").read_text().splitlines()]
        assert progress[-1]["train_loss"] < progress[0]["train_loss"] - 0.5

        misjudged = [client.query(training.MISJUDGED, k.public_key.address).count for k in keys]
        assert misjudged[5] >= 1 and misjudged[:5] == [0] * 5, misjudged
        losses = [(p["round"], round(p["train_loss"], 3)) for p in progress]
        print(f"\nnode 1's mean inner loss by round: {losses}; result {results[0]}; misjudged by node: {misjudged}")
    finally:
        for agent in validators:
            agent.shutdown()
        for proc in procs:
            proc.kill()
            proc.join(10)
        for i in range(4):  # shown when the test fails
            log = tmp_path / f"node{i + 1}" / "agent.log"
            lines = log.read_text().splitlines()[-40:] if log.exists() else ["(no log)"]
            print(f"--- node {i + 1}'s training agent ---", *lines, sep="\n")
