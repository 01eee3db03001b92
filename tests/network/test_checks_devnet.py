"""Spot checks on a 4-validator devnet (real CometBFT): an executor that runs a smaller model under SmolLM2's name
is caught by the honest validators' checkers, refunds go back to the developer, it forfeits its cycle and its
reputation is 0; the honest executors are never found invalid and are paid at settlement.

Nodes 1-3 run `racenet node run` daemons (Race, API, executor and checker with their beacon keys). Node 4 has no
daemon: the test runs its parts in process — an honest Race worker (so it holds weight and gets routed to), and an
executor whose model keeps only 20 of SmolLM2's 30 layers, behind the node API on node 4's port.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import openai
import pytest
import uvicorn
from click.testing import CliRunner

from racenet.chain.modules import inference, race, verification
from racenet.chain.modules.inference import MsgServeModels, ReceiptStatus
from racenet.chain.modules.verification import TaskStatus
from racenet.cli.main import cli
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.devnet import DEVNET_PASSPHRASE, Devnet
from racenet.ml import cheats
from racenet.ml.transformers_backend import TransformersBackend
from racenet.node.api import create_app
from racenet.node.client import ChainClient
from racenet.node.compute import ComputeThread
from racenet.node.executor import Executor
from racenet.node.race_worker import RaceWorker
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import TransferAgent
from tests.network.conftest import BLOCK_TIME, stop_devnet
from tests.network.netutil import free_base_port, wait_for
from tests.network.test_inference_devnet import MODEL, api_key, developer  # noqa: F401 (a fixture)

pytestmark = pytest.mark.network

QUESTIONS = ["Name a color.", "What is 2 + 2?", "Name a fruit.", "Say hello.", "Name an animal.", "Name a month."]


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("checks") / "net"
    try:
        args = ["devnet", "up", "--dir", str(directory), "--block-time", BLOCK_TIME]
        args += ["--compute-budgets", "0.2,0.2,0.2,0", "--base-port", str(free_base_port(4))]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        yield directory
    finally:
        stop_devnet(directory)


@pytest.fixture(scope="module")
def net(net_dir: Path) -> Devnet:
    return Devnet.open(net_dir)


@pytest.fixture(scope="module")
def chain(net: Devnet) -> ChainClient:
    return ChainClient(net.state.nodes[0].rpc_url, timeout=10)


@pytest.fixture(scope="module")
def cheater(net: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[bytes]:
    """Node 4 racing honestly and executing with a smaller model behind its API; its address."""
    record = net.state.nodes[3]
    key: PrivateKey = Keyring(net.state.dir / "keyring").load(record.name, DEVNET_PASSPHRASE)
    client = ChainClient(record.rpc_url, timeout=10)
    sender = TxSender(client, key)
    compute = ComputeThread(1)
    model = compute.run(TransformersBackend.packaged)
    small = compute.run(cheats.smaller, model)
    state = tmp_path_factory.mktemp("cheater")
    executor = Executor(small, client, sender, state / "executor", compute)
    app = create_app(TransferAgent(client, sender, model), executor)
    host, port = record.api_url.removeprefix("http://").split(":")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), log_level="warning"))
    threading.Thread(target=server.run, name="cheater-api", daemon=True).start()
    sender.send([MsgServeModels((MODEL,), record.api_url)])
    worker = RaceWorker(client, sender, compute, state / "race", compute_budget=0.3, should_yield=executor.busy)
    racing = threading.Thread(target=worker.run, name="cheater-race")
    racing.start()
    try:
        yield key.public_key.address
    finally:
        worker.stop.set()
        racing.join()
        server.should_exit = True
        client.close()


def weights(chain: ChainClient) -> dict[bytes, int]:
    return {n.address: n.weight for n in chain.query(race.NODES).nodes}


def test_a_smaller_model_is_caught_on_the_devnet_and_honest_executors_are_paid(
    net: Devnet,
    chain: ChainClient,
    cheater: bytes,
    developer: PrivateKey,  # noqa: F811
) -> None:
    wait_for("four serving nodes with weight", lambda: len([w for w in weights(chain).values() if w]) == 4, 400)
    wait_for("four servers", lambda: len(chain.query(inference.SERVERS, MODEL).servers) == 4, 60)
    key = api_key(net, chain, developer, "checked-dev")
    client = openai.OpenAI(base_url=net.state.nodes[0].api_url + "/v1", api_key=key, timeout=180, max_retries=0)
    executors: Counter[bytes] = Counter()
    for n in range(40):
        question = QUESTIONS[n % len(QUESTIONS)]
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=12, temperature=0.7 * (n % 2)
        )
        request_id = bytes.fromhex(answer.id.removeprefix("chatcmpl-"))
        receipt = wait_for("the Finish", partial(finished, chain, request_id), timeout=60)
        executors[receipt.executor] += 1
        if invalid_tasks(chain) and executors[cheater] >= 2 and len(executors) >= 3:
            break
    caught = wait_for("a cheater's task found invalid", lambda: invalid_tasks(chain) or None, timeout=120)
    tasks = open_tasks(chain)
    by_executor: dict[bytes, Counter[str]] = {}
    for t in tasks:
        by_executor.setdefault(t.task.executor, Counter())[t.task.status.value] += 1
    print({("cheater" if a == cheater else a.hex()[:8]): dict(c) for a, c in by_executor.items()})
    assert all(chain.query(verification.TASK, r).executor == cheater for r in caught)  # type: ignore[union-attr]
    for address, counts in by_executor.items():
        if address != cheater:
            assert counts[TaskStatus.INVALID.value] == 0, "an honest executor was found invalid"
    cycle = chain.query(verification.TASK, caught[0]).cycle  # type: ignore[union-attr]
    wait_for("the caught cycle to settle", lambda: settled(chain, cycle), timeout=200)
    assert chain.query(verification.REPUTATION, cheater).reputation == 0
    honest_reputations = [chain.query(verification.REPUTATION, a).reputation for a in by_executor if a != cheater]
    assert any(r >= 1 for r in honest_reputations), "an honest executor gained reputation"
    assert not any(a.cycle == cycle for a in chain.query(verification.ACCOUNTS, cheater).cycles)


def finished(chain: ChainClient, request_id: bytes) -> inference.Receipt | None:
    record = chain.query(inference.REQUEST, request_id)
    receipt = None if record is None else record.receipt
    return receipt if receipt and receipt.status == ReceiptStatus.FINISHED else None


def open_tasks(chain: ChainClient) -> list[verification.OpenTask]:
    return list(chain.query(verification.TASKS, b"\x00" * 20).tasks)


def invalid_tasks(chain: ChainClient) -> list[bytes]:
    return [t.request_id for t in open_tasks(chain) if t.task.status == TaskStatus.INVALID]


def settled(chain: ChainClient, cycle: int) -> bool:
    return not any(t.task.cycle == cycle for t in open_tasks(chain))
