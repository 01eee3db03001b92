"""Spot checks on a 4-validator devnet (real CometBFT): an executor that cheats in every way `racenet.ml.cheats`
knows — a smaller model, perturbed weights, an appended advertisement, random tokens, an empty answer and pre-fill
(a cheap model writes, the real one scores) — is caught by the honest validators' checkers for each cheat, every
cycle it is caught in releases nothing and its reputation starts over; the honest executors, one in fp32 and one in
bf16, are never found invalid, are paid for every cycle they served in and gain a reputation point for each. The
test prints, per cheat and per honest executor, tasks served / checked / failed a check / found invalid.

Nodes 1 and 2 run `racenet node run` daemons (Race, API, fp32 executor and checker with their beacon keys). Nodes 3
and 4 have no daemon: the test runs their parts in process. Node 3 is honest: a Race worker, an executor in bf16
and a checker with the fp32 model. Node 4 races honestly but executes with `cheats.CheatingBackend`, which answers
each request with the next cheat in turn, and checks nothing. Requests go through node 1 (never its own executor).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import openai
import pytest
import torch
import uvicorn

from racenet.chain.modules import inference, race, verification
from racenet.chain.modules.inference import MsgServeModels
from racenet.crypto.address import decode_address, encode_address
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.devnet import DEVNET_PASSPHRASE, Devnet
from racenet.ml import cheats
from racenet.ml.backend import Backend
from racenet.ml.sampling import request_sampling_seed
from racenet.ml.transformers_backend import TransformersBackend
from racenet.node.api import create_app
from racenet.node.beacon_agent import load_or_create_secret
from racenet.node.checker import Checker
from racenet.node.client import ChainClient, ClientError
from racenet.node.compute import ComputeThread
from racenet.node.executor import Executor
from racenet.node.race_worker import RaceWorker
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import TransferAgent
from tests.network.conftest import running_devnet
from tests.network.netutil import wait_for
from tests.network.test_inference_devnet import MODEL, api_key, developer  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.network, pytest.mark.timeout(1200)]

QUESTIONS = [
    "Describe your favourite color.",
    "Explain what a hash function is.",
    "Tell me about apples.",
    "Write a greeting for a friend.",
    "Describe a cat.",
    "Why is the sky blue?",
    "What do you like about spring?",
]
MAX_TOKENS = 16
MAX_REQUESTS = 240
CONCURRENT_REQUESTS = 3
B = TypeVar("B", bound=Backend)


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_devnet(tmp_path_factory, "checks", "0.2,0.2,0,0") as directory:
        yield directory


@pytest.fixture(scope="module")
def net(net_dir: Path) -> Devnet:
    return Devnet.open(net_dir)


@pytest.fixture(scope="module")
def chain(net: Devnet) -> ChainClient:
    return ChainClient(net.state.nodes[0].rpc_url, timeout=10)


@dataclass(frozen=True)
class Node(Generic[B]):
    """A node the test runs in process: its address and the backend its executor answers with."""

    address: bytes
    backend: B


@contextmanager
def in_process_node(
    net: Devnet, index: int, state: Path, executor_backend: Callable[[TransformersBackend], B], *, checks: bool
) -> Iterator[Node[B]]:
    """Node `index` racing honestly, executing with `executor_backend(SmolLM2)` behind its API, checking with SmolLM2
    in fp32 if `checks`: the parts of `racenet node run`, with the executor's backend of the test's choice."""
    record = net.state.nodes[index]
    key: PrivateKey = Keyring(net.state.dir / "keyring").load(record.name, DEVNET_PASSPHRASE)
    client = ChainClient(record.rpc_url, timeout=10)
    sender = TxSender(client, key)
    compute = ComputeThread(1)
    model = compute.run(TransformersBackend.packaged)
    backend = compute.run(executor_backend, model)
    executor = Executor(backend, client, sender, state / "executor", compute)
    app = create_app(TransferAgent(client, sender, model), executor)
    host, port = record.api_url.removeprefix("http://").split(":")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), log_level="warning"))
    threading.Thread(target=server.run, name=f"{record.name}-api", daemon=True).start()
    sender.send([MsgServeModels((MODEL,), record.api_url)])
    checker = None
    if checks:
        checker = Checker(client, sender, model, load_or_create_secret(net.state.home(record)), compute)
        threading.Thread(target=checker.run, name=f"{record.name}-checker", daemon=True).start()
    worker = RaceWorker(client, sender, compute, state / "race", compute_budget=0.25, should_yield=executor.busy)
    racing = threading.Thread(target=worker.run, name=f"{record.name}-race")
    racing.start()
    try:
        yield Node(key.public_key.address, backend)
    finally:
        worker.stop.set()
        if checker is not None:
            checker.stop.set()
        racing.join()
        server.should_exit = True
        client.close()


@pytest.fixture(scope="module")
def bf16(net: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node[TransformersBackend]]:
    """Node 3: honest, executing in bf16 (its checks run in fp32)."""
    with in_process_node(
        net, 2, tmp_path_factory.mktemp("bf16"), lambda m: m.in_dtype(torch.bfloat16), checks=True
    ) as node:
        yield node


@pytest.fixture(scope="module")
def cheater(net: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node[cheats.CheatingBackend]]:
    """Node 4: answers every request with the next cheat; checks nothing."""
    with in_process_node(net, 3, tmp_path_factory.mktemp("cheater"), cheats.CheatingBackend, checks=False) as node:
        yield node


@dataclass
class Ledger:
    """What the chain showed while the test ran: each task (before its settlement) and, from every block's events,
    each check's outcome, each caught task and each settled node-cycle's (released, burned)."""

    chain: ChainClient
    next_height: int
    tasks: dict[bytes, verification.Task] = field(default_factory=dict)
    checks: dict[bytes, list[bool]] = field(default_factory=dict)
    caught: set[bytes] = field(default_factory=set)
    releases: dict[tuple[bytes, int], tuple[int, int]] = field(default_factory=dict)
    history: list[tuple[bytes, int | None]] = field(default_factory=list)
    misjudged: list[tuple[bytes, int, str]] = field(default_factory=list)
    """(node, cycle, what it voted on) for every vote on the losing side."""
    """(node, None) when it is caught, (node, cycle) when its cycle settles; in block order."""

    def update(self) -> None:
        """Read the open tasks and the events of every block up to the latest."""
        for open_task in open_tasks(self.chain):
            self.tasks[open_task.request_id] = open_task.task
        top = self.chain.height()
        while self.next_height <= top:
            try:
                result = self.chain.call("block_results", height=str(self.next_height))
            except ClientError:
                return  # the newest block's results are stored just after its height is reported: next time
            events = list(result.get("finalize_block_events") or [])
            for tx in result.get("txs_results") or []:
                if int(tx.get("code", 0)) == 0:
                    events += tx.get("events") or []
            for event in events:
                self._record(event["type"], {a["key"]: a["value"] for a in event.get("attributes") or []})
            self.next_height += 1

    def _record(self, kind: str, attributes: dict[str, str]) -> None:
        if kind == "verification_check":
            self.checks.setdefault(bytes.fromhex(attributes["request_id"]), []).append(attributes["passed"] == "true")
        elif kind == "verification_caught":
            self.caught.add(bytes.fromhex(attributes["request_id"]))
            self.history.append((decode_address(attributes["executor"]), None))
        elif kind == "verification_misjudged":
            self.misjudged.append((decode_address(attributes["node"]), int(attributes["cycle"]), attributes["what"]))
        elif kind == "verification_release":
            key = (decode_address(attributes["node"]), int(attributes["cycle"]))
            self.releases[key] = (int(attributes["released"]), int(attributes["burned"]))
            self.history.append(key)

    def watch(self, asked: list[bytes]) -> Callable[[], bool]:
        """A condition for `wait_for` that updates the ledger and holds once every asked request is a task or
        expired (an executor's Finish lands after its answer, later still under load), and it has read the block by
        which every task had settled."""

        empty_at: list[int] = []

        def settled() -> bool:
            self.update()
            if any(r not in self.tasks and not expired(self.chain, r) for r in asked):
                return False
            if not empty_at and not open_tasks(self.chain):
                empty_at.append(self.chain.height())
            return bool(empty_at) and self.next_height > empty_at[0]

        return settled

    def of(self, executor: bytes) -> list[bytes]:
        """The request ids of the tasks `executor` finished."""
        return [r for r, t in self.tasks.items() if t.executor == executor]

    def cycles(self, executor: bytes) -> set[int]:
        """The cycles in which `executor` finished tasks."""
        return {self.tasks[r].cycle for r in self.of(executor)}

    def caught_cycles(self, executor: bytes) -> set[int]:
        """The cycles in which `executor` was caught."""
        return {self.tasks[r].cycle for r in self.of(executor) if r in self.caught}

    def reputation(self, node: bytes) -> int:
        """The reputation the rules give `node` from what the ledger saw (none before it): back to 0 when caught,
        one point for each settled cycle in which it finished tasks and was not caught."""
        points = 0
        served, caught = self.cycles(node), self.caught_cycles(node)
        for address, cycle in self.history:
            if address == node and cycle is None:
                points = 0
            elif address == node and cycle in served and cycle not in caught:
                points += 1
        return points

    def counts(self, requests: list[bytes]) -> tuple[int, int, int, int]:
        """(served, checked, failed a check, found invalid) over these requests."""
        failed = sum(not all(self.checks[r]) for r in requests if r in self.checks)
        return len(requests), sum(r in self.checks for r in requests), failed, sum(r in self.caught for r in requests)


def weights(chain: ChainClient) -> dict[bytes, int]:
    return {n.address: n.weight for n in chain.query(race.NODES).nodes}


def test_every_cheat_is_caught_on_the_devnet_and_honest_fp32_and_bf16_executors_are_paid(
    net: Devnet,
    chain: ChainClient,
    bf16: Node[TransformersBackend],
    cheater: Node[cheats.CheatingBackend],
    developer: PrivateKey,  # noqa: F811
) -> None:
    def weighted() -> bool:
        """Whether every node holds weight. New requests wait for it: when a cycle's Race goes wrong under load and
        one node is left with weight, it executes every request, its Race votes come too late, and the others never
        get weight back while the traffic lasts."""
        return len([w for w in weights(chain).values() if w]) == 4

    wait_for("four serving nodes with weight", weighted, 400)
    wait_for("four servers", lambda: len(chain.query(inference.SERVERS, MODEL).servers) == 4, 60)
    keyring = Keyring(net.state.dir / "keyring")
    gateway, fp32 = (keyring.load(n.name, DEVNET_PASSPHRASE).public_key.address for n in net.state.nodes[:2])
    key = api_key(net, chain, developer, "checked-dev")
    client = openai.OpenAI(base_url=net.state.nodes[0].api_url + "/v1", api_key=key, timeout=180, max_retries=0)
    ledger = Ledger(chain, chain.height())
    asked: list[bytes] = []

    def cheat_of(request_id: bytes) -> cheats.Cheat:
        return cheater.backend.served[request_sampling_seed(request_id, None)]

    def done() -> bool:
        cheater_tasks = set(ledger.of(cheater.address))
        caught = {cheat_of(r) for r in ledger.caught & cheater_tasks}
        passed = {ledger.tasks[r].executor for r, c in ledger.checks.items() if r in ledger.tasks and all(c)}
        return caught == set(cheats.CHEATS) and {fp32, bf16.address} <= passed

    def ask(n: int) -> bytes:
        """Request n through node 1; while no other node holds weight (its Race went wrong this cycle), wait."""
        for _ in range(10):
            try:
                answer = client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}],
                    max_tokens=MAX_TOKENS,
                    temperature=0.7 * (n % 2),
                )
                return bytes.fromhex(answer.id.removeprefix("chatcmpl-"))
            except openai.InternalServerError as e:
                if "no node with voting weight" not in e.message:
                    raise
                wait_for(
                    "an executor with weight", lambda: any(w for a, w in weights(chain).items() if a != gateway), 300
                )
        raise AssertionError(f"request {n} found no executor with weight ten times")

    with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:  # while one request waits for its block, others run
        pending = {pool.submit(ask, n) for n in range(CONCURRENT_REQUESTS)}
        while pending:
            answered, pending = wait(pending, return_when=FIRST_COMPLETED)
            asked.extend(f.result() for f in answered)
            ledger.update()
            for _ in answered if not done() else ():
                if len(asked) + len(pending) < MAX_REQUESTS:
                    wait_for("four nodes with weight", weighted, timeout=600)
                    pending.add(pool.submit(ask, len(asked) + len(pending)))
    wait_for("every task settled", ledger.watch(asked), timeout=300)
    unfinished = set(asked) - set(ledger.tasks)
    assert all(expired(chain, r) for r in unfinished), "every request was finished, or expired before its Finish"

    by_cheat = {kind: [r for r in ledger.of(cheater.address) if cheat_of(r) == kind] for kind in cheats.CHEATS}
    rows = {f"cheat: {kind}": requests for kind, requests in by_cheat.items()}
    rows |= {"honest fp32 (node 2)": ledger.of(fp32), "honest bf16 (node 3)": ledger.of(bf16.address)}
    print(f"\n{len(asked)} requests\n{'executor':<26}{'served':>8}{'checked':>9}{'check failed':>14}{'invalid':>9}")
    for name, requests in rows.items():
        served, checked, failed, invalid = ledger.counts(requests)
        print(f"{name:<26}{served:>8}{checked:>9}{failed:>14}{invalid:>9}")
    reputations = {a: chain.query(verification.REPUTATION, a).reputation for a in (fp32, bf16.address, cheater.address)}
    for name, address in (("cheater", cheater.address), ("honest fp32", fp32), ("honest bf16", bf16.address)):
        paid = {c: ledger.releases.get((address, c)) for c in sorted(ledger.cycles(address))}
        caught = sorted(ledger.caught_cycles(address))
        print(
            f"{name}: (released, burned) per cycle served {paid} (None: nothing held), caught in {caught}, "
            f"reputation {reputations[address]}"
        )
    print(f"{len(unfinished)} answered requests expired before their Finish landed (the developer paid nothing)")
    names = {cheater.address: "cheater", fp32: "honest fp32", bf16.address: "honest bf16", gateway: "node 1"}
    for node, cycle, what in ledger.misjudged:
        task = ledger.tasks.get(bytes.fromhex(what.rsplit(" ", 1)[-1])) if what.startswith("re-verification") else None
        of = "" if task is None else f" (a task of {names.get(task.executor, encode_address(task.executor))})"
        print(f"misjudged: {names.get(node, encode_address(node))} in cycle {cycle}: {what}{of}")

    for kind, requests in by_cheat.items():
        assert ledger.counts(requests)[3] >= 1, f"the {kind} cheat was never caught"
    for cycle in ledger.caught_cycles(cheater.address):
        released, _ = ledger.releases.get((cheater.address, cycle), (0, 0))
        assert released == 0, f"the cheater was paid for its caught cycle {cycle}"
    assert any(address == cheater.address and c is None for address, c in ledger.history)
    assert reputations[cheater.address] == ledger.reputation(cheater.address), "caught, its reputation started over"
    for name, address in (("fp32", fp32), ("bf16", bf16.address)):
        assert ledger.counts(ledger.of(address))[3] == 0, f"the honest {name} executor was found invalid"
        releases = [ledger.releases.get((address, c), (0, 0))[0] for c in ledger.cycles(address)]
        assert all(released > 0 for released in releases), f"the honest {name} executor was not paid"
        assert reputations[address] == len(ledger.cycles(address)) >= 1, f"{name} gains a point per clean cycle"


def expired(chain: ChainClient, request_id: bytes) -> bool:
    """Whether the request expired on chain (answered too late under load: its Finish was refused)."""
    info = chain.query(inference.REQUEST, request_id)
    return info is not None and info.receipt is not None and info.receipt.status == inference.ReceiptStatus.EXPIRED


def open_tasks(chain: ChainClient) -> list[verification.OpenTask]:
    return list(chain.query(verification.TASKS, b"\x00" * 20).tasks)
