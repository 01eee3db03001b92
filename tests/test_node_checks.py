"""Spot checks end to end, without sockets: real SmolLM2 executors, validators' checkers, the real chain.

Four Race nodes serve SmolLM2-135M-Instruct: node 1 is the transfer agent the developer calls (weight 30),
nodes 2 (fp32) and 3 (bf16) are honest executors (20 each), node 4 runs a smaller model under the same name
(a cheat, weight 30: below half, so the honest majority decides, and heavy enough to be routed to often).
Every node runs `racenet.node.checker` with its beacon key. Requests go through node 1's API; the checkers
find their duties, fetch the answers from the executors, check them and report; a failed check is
re-verified by the others. The cheater is caught, refunded tasks come back to the developer, and at
settlement it gets nothing and its reputation is 0, while the honest executors (fp32 and bf16) are paid and
gain reputation.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules import auth, bank, verification
from racenet.chain.modules.bank import BankGenesis, MsgSend
from racenet.chain.modules.inference import InferenceGenesis, ModelEntry, ServerEntry
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.modules.verification import MsgReport, TaskStatus
from racenet.chain.scalars import Amount
from racenet.chain.tx import build_tx
from racenet.ml import cheats
from racenet.ml.transformers_backend import TransformersBackend
from racenet.node.api import create_app
from racenet.node.checker import Checker
from racenet.node.compute import ComputeThread
from racenet.node.executor import Executor, answer_fetch_headers
from racenet.node.request_signing import signed_headers
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import TransferAgent
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, balances, beacon_secret, key
from tests.nodefake import Executors, FakeChain, join_settlements

MODEL = "SmolLM2-135M-Instruct"
NODES = [key(1), key(2), key(3), key(4)]
WEIGHTS = [30, 20, 20, 30]
CHEATER = NODES[3].public_key.address
DEV = key(50)
QUESTIONS = [
    "Name a color.",
    "What is 2 + 2?",
    "Say hello in French.",
    "Name a fruit.",
    "What is the capital of Italy?",
    "Name an animal.",
    "What day comes after Monday?",
    "Name a planet.",
]


def host(i: int) -> str:
    return f"node{i}.test"


def genesis() -> Genesis:
    nodes = tuple(
        RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
        for i, (k, w) in enumerate(zip(NODES, WEIGHTS, strict=True))
    )
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(WEIGHTS)],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*NODES, DEV])),
            race=RaceGenesis(params=RaceParams(race_blocks=300), nodes=nodes),
            inference=InferenceGenesis(
                params=InferenceParams(expiry_blocks=30, allow_private_endpoints=True),
                models=(ModelEntry(MODEL, 1),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"http://{host(i)}") for i, k in enumerate(NODES)
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(1_000)),
        ),
    )


@dataclass
class World:
    chain: FakeChain
    api: TestClient
    checkers: list[Checker]

    def tasks(self) -> list[verification.OpenTask]:
        return list(self.chain.client().query(verification.TASKS, NODES[0].public_key.address).tasks)

    def balance(self, address: bytes) -> int:
        return self.chain.client().query(bank.BALANCE, address).amount


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersBackend]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TransformersBackend.packaged(threads=1)
    torch.set_num_threads(threads)


@pytest.fixture
def world(tmp_path: Path, model: TransformersBackend) -> Iterator[World]:
    chain = FakeChain(tmp_path / "chain", genesis())
    chain.until_beacon()
    executors, compute = Executors(), ComputeThread(1)
    backends = [model, model, model.in_dtype(torch.bfloat16), cheats.smaller(model)]
    apps, checkers = [], []
    for i, (node_key, backend) in enumerate(zip(NODES, backends, strict=True)):
        client = chain.client()
        sender = TxSender(client, node_key)
        executor = Executor(backend, client, sender, tmp_path / f"executor{i}", compute)
        agent = TransferAgent(client, sender, model, transport=executors.transport)
        apps.append(create_app(agent, executor))
        executors.add(host(i), apps[-1])
        secret = beacon_secret(node_key.public_key.address)
        checkers.append(Checker(client, sender, model, secret, compute, transport=executors.transport))
    yield World(chain, TestClient(apps[0]), checkers)
    join_settlements()
    chain.close()


def ask(world: World, question: str, temperature: float) -> None:
    """A signed request through node 1's API, answered and settled."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 16}
    body["temperature"] = temperature
    raw = json.dumps(body).encode()
    prompt_tokens = len(world.checkers[0].backend.tokenize_chat(body["messages"]))  # type: ignore[arg-type]
    headers = signed_headers(
        DEV,
        CHAIN_ID,
        raw,
        transfer_agent=NODES[0].public_key.address,
        prompt_tokens=prompt_tokens,
        expiry_height=world.chain.height() + 25,
        max_price_per_token=1_000,
    )
    answer = world.api.post("/v1/chat/completions", content=raw, headers=headers)
    assert answer.status_code == 200, answer.text
    join_settlements()


def check_all(world: World) -> None:
    """Let every checker poll, with blocks between, until no task is waiting for a check or a vote."""
    for _ in range(40):
        for checker in world.checkers:
            checker.poll()
        world.chain.block()
        pending = [t for t in world.tasks() if t.task.status in (TaskStatus.OPEN, TaskStatus.DISPUTED)]
        duty_rounds_known = all(
            world.chain.node.app.beacon.keeper.output(world.chain.node.app.read_context(), t.task.duty_round)
            for t in pending
        )
        if duty_rounds_known and not any(t.task.status == TaskStatus.DISPUTED for t in pending):
            return


def test_a_smaller_model_is_caught_and_honest_fp32_and_bf16_executors_are_paid(world: World) -> None:
    app = world.chain.node.app
    for n in range(40):  # routing and duties are draws: ask until the cheater was caught and an honest answer passed
        ask(world, QUESTIONS[n % len(QUESTIONS)], temperature=0.0 if n % 2 else 0.7)
        check_all(world)
        served = {t.task.executor for t in world.tasks()}
        caught = any(t.task.status == TaskStatus.INVALID for t in world.tasks())
        passed = any(not isinstance(r, str) and r.passed for c in world.checkers for r in c.results.values())
        if caught and passed and {k.public_key.address for k in NODES[1:3]} <= served:
            break
    statuses: dict[bytes, list[TaskStatus]] = {}
    for open_task in world.tasks():
        statuses.setdefault(open_task.task.executor, []).append(open_task.task.status)
    roles = {NODES[1].public_key.address: "fp32", NODES[2].public_key.address: "bf16", CHEATER: "smaller model"}
    print({roles[k]: Counter(s.value for s in v) for k, v in statuses.items()})
    honest = [k.public_key.address for k in NODES[1:3]]
    for executor in honest:
        assert TaskStatus.INVALID not in statuses.get(executor, [])
    assert TaskStatus.INVALID in statuses.get(CHEATER, []), "the cheater served and was checked at least once"
    results = [r for c in world.checkers for r in c.results.values() if not isinstance(r, str)]
    assert any(r.passed for r in results) and any(not r.passed for r in results)
    before = {a: world.balance(a) for a in [*honest, CHEATER]}
    held = {a: app.inference.keeper.pending_reward(app.read_context(), a) for a in before}
    schedule = app.race.keeper.schedule(app.read_context())
    params = app.verification.keeper.params.get(app.read_context())
    world.chain.until(schedule.cycle_start(1) + params.check_blocks + params.dispute_blocks)
    reputation = app.verification.keeper.reputation
    assert world.balance(CHEATER) == before[CHEATER]  # caught: the whole cycle is forfeited
    assert reputation.get(app.read_context(), CHEATER) == 0
    for executor in honest:
        if held[executor]:
            assert world.balance(executor) > before[executor]
            assert reputation.get(app.read_context(), executor) == 1


def test_only_weight_holders_fetch_answers_and_only_with_a_signed_fetch(world: World) -> None:
    ask(world, QUESTIONS[0], temperature=0.0)
    open_task = world.tasks()[0]
    executor = next(i for i, k in enumerate(NODES) if k.public_key.address == open_task.task.executor)
    executor_api = world.checkers[0].http
    url = f"http://{host(executor)}/racenet/v1/answers/{open_task.request_id.hex()}"
    assert executor_api.get(url).status_code == 401
    outsider = answer_fetch_headers(DEV, CHAIN_ID, open_task.request_id, open_task.task.executor)
    assert executor_api.get(url, headers=outsider).status_code == 403
    wrong_executor = answer_fetch_headers(NODES[0], CHAIN_ID, open_task.request_id, DEV.public_key.address)
    assert executor_api.get(url, headers=wrong_executor).status_code == 401
    validator = answer_fetch_headers(NODES[0], CHAIN_ID, open_task.request_id, open_task.task.executor)
    fetched = executor_api.get(url, headers=validator)
    assert fetched.status_code == 200 and fetched.json()["answer"]["token_ids"]
    fetched_record = world.checkers[0].fetch(open_task)
    assert fetched_record.answer.text == fetched.json()["answer"]["text"]


def test_a_developer_reports_through_the_api_and_only_reports_are_relayed(world: World) -> None:
    ask(world, QUESTIONS[1], temperature=0.0)
    request_id = world.tasks()[0].request_id
    client = world.chain.client()
    sequence = client.query(auth.ACCOUNT, DEV.public_key.address).sequence

    def post(msg: Msg, seq: int) -> Any:
        tx = base64.b64encode(build_tx(DEV, CHAIN_ID, seq, FEE, [msg])).decode()
        return world.api.post("/v1/reports", json={"tx": tx})

    refused = post(MsgSend(NODES[0].public_key.address, 1), sequence)
    assert refused.status_code == 400 and "exactly one verification/Report" in refused.json()["error"]["message"]
    assert world.api.post("/v1/reports", content=b"not json").status_code == 400
    relayed = post(MsgReport(request_id), sequence)
    assert relayed.status_code == 200, relayed.text
    task = client.query(verification.TASK, request_id)
    assert task is not None and task.status == TaskStatus.DISPUTED and task.reported
    again = post(MsgReport(request_id), sequence + 1)
    assert again.status_code == 400 and again.json()["error"]["code"] == "report_refused"
