"""The node's Race loop against the real chain, without sockets.

Three `RaceWorker`s mine the tiny Race, commit, reveal and vote through the mock RPC. Two of them are killed
while mining: a kill leaves on disk exactly what the worker had saved, so each is modelled by copying its
`cycle-0.json` at that moment to the directory of a new worker (the dead one's later writes go elsewhere).
One comes back while the race is still on and mines onward from where it stopped; the other only comes
back once mining has ended and commits what it had saved, in the race window's last block with the others.
After every phase every worker is replaced by a new one on the same state directory, which sends nothing again.
At the tally each node's weight is what it found: its saved nonces, each once (a kill between a batch's finds
and its next-nonce update would make a restarted worker find them again; it resumes after its last find
instead).
Blocks are made by the test (and when a worker waits for its transaction), so mining ends when the test
closes the race window.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.modules import auth, race
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.race import OutcomeStatus, Phase, ProofTree, RaceGenesis, RaceNode
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.scalars import Address
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PrivateKey
from racenet.node.compute import ComputeThread
from racenet.node.race_worker import CycleState, RaceWorker
from racenet.node.sender import TxSender
from tests.chain import CHAIN_ID, GENESIS_TIME, balances, key
from tests.nodefake import FakeChain

NODES = [key(1), key(2), key(3)]
PARAMS = RaceParams(
    race_blocks=5,
    reveal_blocks=4,
    vote_blocks=4,
    escalation_blocks=1,
    sample_size=4,
    verdict_table=(0, 0, 0, 0, 1),
    validators_per_participant=2,
)
"""Mining from the race seed's block until three blocks before the race ends; reveal and vote windows long enough
for three workers to send one transaction each, one block apiece, with the phase still open afterwards."""


def genesis() -> Genesis:
    """Three Race nodes of equal weight on the small Race parameters."""
    nodes = tuple(RaceNode(k.public_key.address, key(100 + i).public_key.raw, 10) for i, k in enumerate(NODES))
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, 10) for i in range(len(NODES))],
        app_state=AppState(bank=BankGenesis(balances=balances(NODES)), race=RaceGenesis(params=PARAMS, nodes=nodes)),
    )


class Fleet:
    """The workers a test starts, on one compute thread; `stop()` ends every one (also when a test fails)."""

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain
        self.compute = ComputeThread(2)
        self.workers: list[RaceWorker] = []
        self.threads: list[threading.Thread] = []

    def new(self, node: PrivateKey, state_dir: Path, should_yield: Callable[[], bool] | None = None) -> RaceWorker:
        """A new worker process for `node`: its own client and sender, the given state directory."""
        client = self.chain.client()
        made = RaceWorker(client, TxSender(client, node), self.compute, state_dir, should_yield=should_yield)
        self.workers.append(made)
        return made

    def in_background(self, worker: RaceWorker) -> threading.Thread:
        """Run one step of `worker` (mining runs until the race window closes) on its own thread."""
        thread = threading.Thread(target=worker.step)
        thread.start()
        self.threads.append(thread)
        return thread

    def stop(self) -> None:
        """Stop every worker and wait for its thread."""
        for made in self.workers:
            made.stop.set()
        for thread in self.threads:
            thread.join()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[FakeChain]:
    """The chain of `genesis()`."""
    made = FakeChain(tmp_path / "chain", genesis())
    yield made
    made.close()


@pytest.fixture
def fleet(chain: FakeChain) -> Iterator[Fleet]:
    """Workers on `chain`, all stopped before it closes."""
    made = Fleet(chain)
    yield made
    made.stop()


def saved(state_dir: Path) -> dict[str, Any]:
    """The cycle-0 state a worker saved (empty if none yet)."""
    path = state_dir / "cycle-0.json"
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return doc


def schedule(chain: FakeChain) -> Schedule:
    """The chain's cycle schedule."""
    app = chain.node.app
    return app.race.keeper.schedule(app.read_context())


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll until `ready()` (the workers mine meanwhile); the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill_while_mining(dead: RaceWorker, thread: threading.Thread, restart_dir: Path) -> dict[str, Any]:
    """Once `dead` has saved a nonce, keep what its disk holds for the restart, then stop it for good."""
    wait_for("a saved nonce", lambda: bool(saved(dead.state_dir).get("nonces")))
    restart_dir.mkdir(parents=True)
    shutil.copy(dead.state_dir / "cycle-0.json", restart_dir / "cycle-0.json")
    dead.stop.set()
    thread.join()
    return saved(restart_dir)


def test_workers_race_a_cycle_and_killed_ones_resume_without_loss_or_resending(
    chain: FakeChain, fleet: Fleet, tmp_path: Path
) -> None:
    """Mining, commit, reveal and vote survive kills: saved nonces are all committed, mining goes on from the
    saved next nonce, no step is sent twice, and at the tally each node's weight equals its accepted count."""
    dirs = [tmp_path / f"race{i}" for i in range(len(NODES))]
    chain.until(schedule(chain).cycle_start(0))  # the race seed's beacon round is recorded in the cycle's first block
    starts = schedule(chain).phase_starts(0)
    first = [fleet.new(k, tmp_path / f"dead{i}") for i, k in enumerate(NODES[:2])]
    first.append(fleet.new(NODES[2], dirs[2]))
    threads = [fleet.in_background(w) for w in first]
    snapshots = [kill_while_mining(first[i], threads[i], dirs[i]) for i in (0, 1)]

    batches_after_restart: list[None] = []

    def count_batch() -> bool:
        batches_after_restart.append(None)
        return False

    resumed = fleet.new(NODES[0], dirs[0], should_yield=count_batch)
    threads[0] = fleet.in_background(resumed)
    wait_for("a batch mined after the restart", lambda: len(batches_after_restart) >= 2)
    wait_for("node 3's first nonce", lambda: bool(saved(dirs[2]).get("nonces")))
    app = chain.node.app
    sent = chain.broadcasts
    with chain.holding_blocks():
        chain.until(starts[Phase.REVEAL] - 3)
        late = fleet.in_background(fleet.new(NODES[1], dirs[1]))
        wait_for("three commitments", lambda: chain.broadcasts >= sent + 3)
        chain.block()
    for t in (threads[0], threads[2], late):
        t.join()

    before, after = snapshots[0], saved(dirs[0])
    assert after["nonces"][: len(before["nonces"])] == before["nonces"], "nothing found before the kill is lost"
    assert after["next_nonce"] > before["next_nonce"], "the restarted worker mined"
    assert all(n >= before["next_nonce"] for n in after["nonces"][len(before["nonces"]) :]), (
        "it mined on from the saved next nonce, not over again"
    )
    assert app.height == starts[Phase.REVEAL] - 2, "the commitments are in before the race window ends"
    ctx = app.read_context()
    for node, d in zip(NODES, dirs, strict=True):
        nonces = set(saved(d)["nonces"])
        commitment = app.race.keeper.commitments.get(ctx, (0, node.public_key.address))
        assert commitment is not None
        tree = ProofTree(node.public_key.raw, list(nonces))
        assert (commitment.root, commitment.count) == (tree.root, len(nonces)), "every saved nonce committed"
    assert saved(dirs[1])["nonces"] == snapshots[1]["nonces"], "node 2 committed what it had saved"
    sent = chain.broadcasts
    for w in [fleet.new(k, d) for k, d in zip(NODES, dirs, strict=True)]:
        w.step()
    assert chain.broadcasts == sent, "a restarted worker does not commit again"

    for step_phase in (Phase.REVEAL, Phase.VOTE):
        chain.until(starts[step_phase])
        workers = [fleet.new(k, d) for k, d in zip(NODES, dirs, strict=True)]
        for w in workers:
            w.step()
        assert schedule(chain).phase(app.height) == step_phase, "each worker's step took one block of the phase"
        sent = chain.broadcasts
        workers = [fleet.new(k, d) for k, d in zip(NODES, dirs, strict=True)]
        for w in workers:
            w.step()
        assert chain.broadcasts == sent, "a step already done is never sent again by a restarted worker"

    chain.until(schedule(chain).tally_height(0))
    ctx = app.read_context()
    for node, d in zip(NODES, dirs, strict=True):
        outcome = app.race.keeper.outcomes.get(ctx, node.public_key.address)
        found = saved(d)["nonces"]
        assert len(set(found)) == len(found), "no nonce found twice"
        assert outcome is not None
        assert (outcome.status, outcome.weight) == (OutcomeStatus.ACCEPTED, len(found))
        assert app.race.keeper.weight(ctx, node.public_key.address) == len(found)


class VoteDuties:
    """A chain client and sender for `RaceWorker._vote` alone: five assigned claims, two messages per transaction."""

    def __init__(self) -> None:
        self.participants = [key(60 + i).public_key.address for i in range(5)]
        self.sent: list[list[Any]] = []
        self.key = NODES[0]

    def query(self, spec: Any, arg: Any = None) -> Any:
        if spec is race.ASSIGNMENTS:
            return race.Assignments(0, tuple(Address(p) for p in self.participants))
        if spec is auth.PARAMS:
            return auth.Params(max_msgs_per_tx=2)
        if spec is race.REVEAL:
            return race.RevealInfo(0, key(99).public_key.raw, (1, 2, 3))
        raise AssertionError(f"unexpected query {spec}")

    def send(self, msgs: list[Any]) -> None:
        self.sent.append(msgs)

    def run(self, fn: Any, *args: Any) -> list[bool]:
        return [True, False, True]


def test_votes_go_in_transactions_of_at_most_max_msgs_per_tx_and_each_batch_is_saved(tmp_path: Path) -> None:
    stub = VoteDuties()
    worker = RaceWorker(stub, stub, stub, tmp_path)  # type: ignore[arg-type]
    worker._race_for = lambda info: None  # type: ignore[assignment,method-assign,return-value]
    state = CycleState(0)
    worker._vote(None, state)  # type: ignore[arg-type]
    assert [len(batch) for batch in stub.sent] == [2, 2, 1]
    assert [m.participant for batch in stub.sent for m in batch] == stub.participants
    assert all(m.failed == (1,) for batch in stub.sent for m in batch)
    assert saved(tmp_path)["voted"] == [encode_address(p) for p in stub.participants]
    stub.sent.clear()
    RaceWorker(stub, stub, stub, tmp_path)._vote(None, worker._load(0))  # type: ignore[arg-type]
    assert stub.sent == [], "a restarted worker does not vote again"
