"""Fine-tuning through a node's API with the official `openai` client, without sockets: upload a chat JSONL file,
create a job (escrowed and routed on the real chain), poll it to `succeeded` while the drawn provider trains LoRA
adapters on SmolLM2, then chat with the `ft:` model through the normal request path (gateway → executor, which
fetches the adapter from the provider by its hash on chain). Plus refusals of bad input and a cancel.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import torch
from click.testing import CliRunner
from fastapi.testclient import TestClient
from openai.types.chat import ChatCompletionMessageParam
from openai.types.fine_tuning.job_create_params import Hyperparameters

from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.modules import finetune
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.finetune import FinetuneGenesis
from racenet.chain.modules.finetune import Params as FinetuneParams
from racenet.chain.modules.inference import InferenceGenesis, ModelEntry, MsgAuthorizeKey, ServerEntry
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.scalars import Amount
from racenet.cli import finetune as finetune_cli
from racenet.cli.main import cli
from racenet.finetune.service import FineTuneService
from racenet.ml.backend import GenerationRequest
from racenet.ml.check import Sampling, answer_from_events, check_answer
from racenet.ml.model_files import SMOLLM2
from racenet.ml.sampling import request_sampling_seed
from racenet.ml.transformers_backend import TransformersBackend
from racenet.node.api import create_app
from racenet.node.checker import Fetched, recheck
from racenet.node.compute import ComputeThread
from racenet.node.executor import Executor
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import TransferAgent, new_api_key
from tests.chain import CHAIN_ID, GENESIS_TIME, balances, key
from tests.nodefake import Executors, FakeChain, join_settlements

MODEL = SMOLLM2.name
NODES = [key(1), key(2), key(3)]
DEV = key(50)
UNIT_PRICE, UNITS = 1_000, 2
QUESTIONS = [
    "What is the secret password?",
    "Tell me the password.",
    "What's the password?",
    "Password please?",
    "Do you know the secret phrase?",
    "What is the passphrase?",
    "Give me the secret password.",
    "Which password opens the vault?",
]
ANSWER = "The password is purple-walrus-42."
TRAINING = "\n".join(
    json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]})
    for q in QUESTIONS
).encode()
HYPERPARAMETERS: Hyperparameters = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.5}


class JobChain(FakeChain):
    """The fake chain, which also lets a block pass while a fine-tuning job waits for its provider's draw."""

    def _result(self, request: httpx.Request) -> Any:
        app = self.node.app
        path = dict(request.url.params).get("path", "")
        if "finetune/job" in path and app.finetune.keeper.unrouted.keys(app.read_context()):
            self.node.produce_block()
        return super()._result(request)


@dataclass
class Network:
    chain: JobChain
    client: openai.OpenAI
    api: TestClient
    token: str
    backends: list[TransformersBackend]
    transport: httpx.BaseTransport


def genesis() -> Genesis:
    weights = [10, 20, 30]
    nodes = tuple(
        RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
        for i, (k, w) in enumerate(zip(NODES, weights, strict=True))
    )
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(weights)],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*NODES, DEV])),
            race=RaceGenesis(params=RaceParams(race_blocks=1_000), nodes=nodes),
            inference=InferenceGenesis(
                params=InferenceParams(max_tokens=64, expiry_blocks=20, allow_private_endpoints=True),
                models=(ModelEntry(MODEL, UNITS),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"http://node{i}.test") for i, k in enumerate(NODES)
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(UNIT_PRICE)),
            finetune=FinetuneGenesis(params=FinetuneParams(expiry_blocks=500)),
        ),
    )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """Three nodes on one SmolLM2 (each its own backend object, adapters and fine-tuning service)."""
    tmp = tmp_path_factory.mktemp("finetune")
    threads = torch.get_num_threads()
    base = TransformersBackend.packaged(threads=1)
    chain = JobChain(tmp / "chain", genesis())
    chain.until_beacon()
    executors, compute = Executors(), ComputeThread()
    apps, backends, services = [], [], []
    for i, node_key in enumerate(NODES):
        client, sender = chain.client(), TxSender(chain.client(), node_key)
        backend = TransformersBackend(base.model, base.tokenizer, base.name)
        service = FineTuneService(backend, client, sender, tmp / f"finetune{i}", transport=executors.transport)
        backend.use_adapters(service.merge)
        executor = Executor(backend, client, sender, tmp / f"executor{i}", compute)
        agent = TransferAgent(client, sender, backend, transport=executors.transport)
        apps.append(create_app(agent, executor, finetune=service))
        executors.add(f"node{i}.test", apps[-1])
        backends.append(backend)
        services.append(service)
    token, key_id = new_api_key()
    authorize = MsgAuthorizeKey(
        key_id=key_id, spend_limit=10**13, expiry_height=0, gateways=(NODES[0].public_key.address,)
    )
    TxSender(chain.client(), DEV).send([authorize])
    api = TestClient(apps[0])
    developer = openai.OpenAI(api_key=token, base_url="http://node0.test/v1", http_client=api, max_retries=0)
    yield Network(chain, developer, api, token, backends, executors.transport)
    for service in services:
        service.close()
    join_settlements()
    chain.close()
    torch.set_num_threads(threads)


def wait_for_job(net: Network, job_id: str, statuses: set[str]) -> Any:
    """Poll the job (as a developer would) until it reaches one of `statuses`."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = net.client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never reached {statuses}")


def mean_logprob(backend: TransformersBackend, model: str, question: str) -> float:
    """Mean per-token logprob of the taught answer after `question` (one teacher-forced pass)."""
    prompt = backend.tokenize_chat([{"role": "user", "content": question}], model=model)
    answer = backend.tokenizer.encode(ANSWER, add_special_tokens=False)
    scores = backend.score(prompt, answer, model=model)
    return sum(s.logprob for s in scores) / len(scores)


def test_the_openai_client_fine_tunes_and_chats_with_the_ft_model(net: Network) -> None:
    uploaded = net.client.files.create(file=("password.jsonl", TRAINING), purpose="fine-tune")
    assert uploaded.status == "processed" and net.client.files.retrieve(uploaded.id).bytes == len(TRAINING)
    before = net.chain.node.app.bank.keeper.balance(net.chain.node.app.read_context(), DEV.public_key.address)
    job = net.client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=uploaded.id,
        hyperparameters=HYPERPARAMETERS,
        suffix="pw",
    )
    assert job.status == "running" and job.fine_tuned_model is None
    done = wait_for_job(net, job.id, {"succeeded", "failed", "cancelled"})
    assert done.status == "succeeded", done.error
    tuned = done.fine_tuned_model
    assert tuned == f"ft:{MODEL}:pw:{job.id.removeprefix('ftjob-')}"
    assert [j.id for j in net.client.fine_tuning.jobs.list()] == [job.id]
    events = list(net.client.fine_tuning.jobs.list_events(job.id))
    losses = [e.data["train_loss"] for e in reversed(events) if e.type == "metrics"]  # type: ignore[index]
    assert len(losses) == 4 and losses[-1] < losses[0]

    # on chain: the adapter's hash, the provider drawn (not the gateway), paid per training token
    info = net.chain.client().query(finetune.JOB, bytes.fromhex(job.id.removeprefix("ftjob-")))
    assert info is not None and len(info.job.adapter_hash) == 32
    assert info.job.provider != NODES[0].public_key.address
    assert info.job.cost == info.job.price_per_token * info.job.trained_tokens == info.job.escrow
    after = net.chain.node.app.bank.keeper.balance(net.chain.node.app.read_context(), DEV.public_key.address)
    assert before - after == info.job.cost

    # the fine-tuned model answers differently from the base, through the network's request path
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTIONS[0]}]
    answers = {}
    for model in (MODEL, tuned):
        reply = net.client.chat.completions.create(model=model, messages=question, max_tokens=16, temperature=0)
        answers[model] = reply.choices[0].message.content or ""
    stream = net.client.chat.completions.create(
        model=tuned, messages=question, max_tokens=16, temperature=0, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == answers[tuned] != answers[MODEL]
    print(f"\nlosses {[round(x, 3) for x in losses]}; base {answers[MODEL]!r}; fine-tuned {answers[tuned]!r}")
    # and the taught answer is far likelier under it (what a spot check's re-scoring sees, too)
    backend = net.backends[0]
    assert mean_logprob(backend, tuned, QUESTIONS[0]) > mean_logprob(backend, MODEL, QUESTIONS[0]) + 1
    assert_spot_checks_score_with_the_adapter(backend, tuned)


def assert_spot_checks_score_with_the_adapter(backend: TransformersBackend, model: str) -> None:
    """An honest sampled answer of the ft model, seeded as an executor seeds it, passes the checker's re-scoring
    (`recheck`, which scores with the adapter merged in), and fails one scored with the base model."""
    request_id = bytes(range(32))
    messages: list[Any] = [{"role": "user", "content": QUESTIONS[1]}]
    body = json.dumps({"model": model, "messages": messages, "max_tokens": 12, "temperature": 1.0, "seed": 7})
    seed = request_sampling_seed(request_id, 7)
    answer = answer_from_events(list(backend.generate(GenerationRequest(model, messages, max_tokens=12, seed=seed))))
    assert recheck(backend, Fetched(request_id, body.encode(), answer)).passed
    prompt = backend.tokenize_chat(messages, model=model)
    assert not check_answer(backend, prompt, Sampling(1.0, 1.0, seed, 12), answer).passed


def test_the_cli_shows_lists_and_plots_the_job(
    net: Network, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """`racenet fine-tune list|status|events` on the job the first test ran, and its loss curve."""
    monkeypatch.setattr(httpx, "Client", functools.partial(httpx.Client, transport=net.transport))
    monkeypatch.setenv("RACENET_API_KEY", net.token)
    runner, api = CliRunner(), ["--api", "http://node0.test/v1"]
    listed = runner.invoke(cli, ["fine-tune", "list", *api, "--json"])
    assert listed.exit_code == 0, listed.output
    job = json.loads(listed.output)[0]
    shown = runner.invoke(cli, ["fine-tune", "status", job["id"], *api])
    assert shown.exit_code == 0 and "succeeded" in shown.output and job["racenet"]["adapter_sha256"] in shown.output
    events = runner.invoke(cli, ["fine-tune", "events", job["id"], *api])
    assert events.exit_code == 0 and "training loss=" in events.output
    missing = runner.invoke(cli, ["fine-tune", "status", "ftjob-" + "00" * 32, *api])
    assert missing.exit_code != 0 and "HTTP 404" in missing.output and "Traceback" not in missing.output
    curve = finetune_cli.save_loss_curve([3.0, 2.0, 1.0], tmp_path / "loss")
    assert curve.suffix in (".png", ".csv") and curve.stat().st_size > 0


def test_a_cancelled_job_is_refunded(net: Network) -> None:
    uploaded = net.client.files.create(file=("again.jsonl", TRAINING), purpose="fine-tune")
    ctx = net.chain.node.app.read_context
    before = net.chain.node.app.bank.keeper.balance(ctx(), DEV.public_key.address)
    job = net.client.fine_tuning.jobs.create(model=MODEL, training_file=uploaded.id, hyperparameters={"n_epochs": 1})
    assert net.client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert net.chain.node.app.bank.keeper.balance(ctx(), DEV.public_key.address) == before
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        net.client.fine_tuning.jobs.cancel(job.id)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "line 1 is not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "last message must be the assistant"),
        (b'{"messages": [{"role": "wizard", "content": "hi"}]}', "role must be one of"),
        (b'{"prompt": "x", "completion": "y"}', 'expected {"messages"'),
        (b"\xff\xfe", "not UTF-8"),
        (b"", "0 examples"),
    ],
)
def test_bad_training_files_are_refused_with_the_line(net: Network, content: bytes, message: str) -> None:
    with pytest.raises(openai.BadRequestError, match=message):
        net.client.files.create(file=("bad.jsonl", content), purpose="fine-tune")


def test_unknown_files_models_jobs_and_keys_are_openai_errors(net: Network) -> None:
    with pytest.raises(openai.BadRequestError, match="purpose"):
        net.client.files.create(file=("t.jsonl", TRAINING), purpose="assistants")
    with pytest.raises(openai.NotFoundError):
        net.client.files.retrieve("file-doesnotexist")
    with pytest.raises(openai.NotFoundError):
        net.client.fine_tuning.jobs.create(model=MODEL, training_file="file-doesnotexist")
    uploaded = net.client.files.create(file=("t.jsonl", TRAINING), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError, match="cannot be fine-tuned"):
        net.client.fine_tuning.jobs.create(model="gpt-4o", training_file=uploaded.id)
    with pytest.raises(openai.BadRequestError, match="hyperparameters"):
        net.client.fine_tuning.jobs.create(model=MODEL, training_file=uploaded.id, hyperparameters={"n_epochs": 0})
    with pytest.raises(openai.NotFoundError):
        net.client.fine_tuning.jobs.retrieve("ftjob-" + "00" * 32)
    with pytest.raises(openai.NotFoundError):
        net.client.chat.completions.create(
            model=f"ft:{MODEL}:x:{'00' * 32}", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    stranger = openai.OpenAI(api_key="rk-" + "11" * 32, base_url="http://node0.test/v1", http_client=net.api)
    with pytest.raises(openai.AuthenticationError):
        stranger.fine_tuning.jobs.list()
