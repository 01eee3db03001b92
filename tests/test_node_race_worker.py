"""The node's Race loop and its sender against the real chain, without sockets.

Three `RaceWorker`s mine the tiny Race, commit, reveal and vote through the mock RPC; one is stopped in
the middle of mining and replaced by a new worker on the same state directory, which goes on from the
saved nonces and never sends a step twice. At the tally each node's weight is what it found.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.modules import auth
from racenet.chain.modules.bank import BankGenesis, MsgSend
from racenet.chain.modules.race import OutcomeStatus, Phase, RaceGenesis, RaceNode
from racenet.chain.modules.race import Params as RaceParams
from racenet.crypto.keys import PrivateKey
from racenet.node.compute import ComputeThread
from racenet.node.race_worker import RaceWorker
from racenet.node.sender import TxSender
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, balances, key
from tests.nodefake import FakeChain

NODES = [key(1), key(2), key(3)]
PARAMS = RaceParams(
    race_blocks=2, commit_blocks=4, reveal_blocks=4, vote_blocks=4, sample_size=4, validators_per_participant=2
)
"""Phases long enough for three workers to send one transaction each, one block apiece."""


def genesis() -> Genesis:
    nodes = tuple(RaceNode(k.public_key.address, key(100 + i).public_key.raw, 10) for i, k in enumerate(NODES))
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, 10) for i in range(len(NODES))],
        app_state=AppState(bank=BankGenesis(balances=balances(NODES)), race=RaceGenesis(params=PARAMS, nodes=nodes)),
    )


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[FakeChain]:
    made = FakeChain(tmp_path / "chain", genesis())
    yield made
    made.close()


def worker(chain: FakeChain, node: PrivateKey, state_dir: Path, compute: ComputeThread) -> RaceWorker:
    client = chain.client()
    return RaceWorker(client, TxSender(client, node), compute, state_dir)


def saved(state_dir: Path, cycle: int = 0) -> dict[str, Any]:
    path = state_dir / f"cycle-{cycle}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def sequence(chain: FakeChain, node: PrivateKey) -> int:
    return chain.client().query(auth.ACCOUNT, node.public_key.address).sequence


def phase(chain: FakeChain) -> Phase:
    app = chain.node.app
    return app.race.keeper.schedule(app.read_context()).phase(app.height)


def mine_in_background(workers: list[RaceWorker]) -> list[threading.Thread]:
    threads = [threading.Thread(target=w.step) for w in workers]
    for t in threads:
        t.start()
    return threads


def wait_for_nonces(state_dir: Path, timeout: float = 60.0) -> list[int]:
    """The worker's saved nonces once it has saved some (it saves each new find within its poll interval)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nonces = saved(state_dir).get("nonces")
        if isinstance(nonces, list) and nonces:
            return nonces
        time.sleep(0.05)
    raise AssertionError("the worker saved no nonce")


def test_three_workers_race_a_cycle_and_a_restarted_one_resumes_without_loss(chain: FakeChain, tmp_path: Path) -> None:
    compute = ComputeThread(2)
    dirs = [tmp_path / f"race{i}" for i in range(len(NODES))]
    chain.block()
    first = worker(chain, NODES[0], dirs[0], compute)
    [interrupted] = mine_in_background([first])
    before_restart = wait_for_nonces(dirs[0])
    first.stop.set()
    interrupted.join()
    kept = saved(dirs[0])
    assert set(before_restart) <= set(kept["nonces"]), "found nonces survive the stop"

    workers = [worker(chain, k, d, compute) for k, d in zip(NODES, dirs, strict=True)]
    threads = mine_in_background(workers)
    for d in dirs:
        wait_for_nonces(d)
    chain.block()
    for t in threads:
        t.join()
    resumed = saved(dirs[0])
    assert set(kept["nonces"]) <= set(resumed["nonces"]) and resumed["next_nonce"] >= kept["next_nonce"]
    assert len(set(resumed["nonces"])) == len(resumed["nonces"]), "no nonce mined twice"

    for step_phase in (Phase.COMMIT, Phase.REVEAL, Phase.VOTE):
        chain.until(chain.node.app.race.keeper.schedule(chain.node.app.read_context()).phase_starts(0)[step_phase])
        for w in workers:
            w.step()
        assert phase(chain) == step_phase, "each worker's step took one block of the phase"
        sent = chain.broadcasts
        replacement = worker(chain, NODES[0], dirs[0], compute)
        replacement.step()
        for w in workers:
            w.step()
        assert chain.broadcasts == sent, "a step already done is never sent again, not even by a restarted worker"

    app = chain.node.app
    chain.until(app.race.keeper.schedule(app.read_context()).tally_height(0))
    ctx = app.read_context()
    for node, d in zip(NODES, dirs, strict=True):
        outcome = app.race.keeper.outcomes.get(ctx, node.public_key.address)
        found = saved(d)["nonces"]
        assert isinstance(found, list) and outcome is not None
        assert (outcome.status, outcome.weight) == (OutcomeStatus.ACCEPTED, len(found))
        assert app.race.keeper.weight(ctx, node.public_key.address) == len(found)


def test_sender_recovers_from_a_sequence_used_elsewhere_and_pays_the_chain_fee(chain: FakeChain) -> None:
    ours, theirs = TxSender(chain.client(), NODES[0]), TxSender(chain.client(), NODES[0])
    app = chain.node.app
    start = app.bank.keeper.balance(app.read_context(), NODES[0].public_key.address)
    to = NODES[1].public_key.address
    ours.send([MsgSend(to, 1)])
    theirs.send([MsgSend(to, 2)])
    ours.send([MsgSend(to, 3)])
    assert sequence(chain, NODES[0]) == 3
    assert app.bank.keeper.balance(app.read_context(), NODES[0].public_key.address) == start - 6 - 3 * FEE
