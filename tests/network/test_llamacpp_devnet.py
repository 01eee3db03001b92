"""A GPU operator's engine for real: node 4 of a 4-validator devnet serves through llama-cpp-python's OpenAI-compatible
server (from PyPI) loading the same SmolLM2 GGUF the network registers, via `racenet devnet up --backend
4=openai:<its URL>`. The official `openai` client gets answers through node 1 (streamed and not, at temperature 0:
a stock engine's sampler is not the replayable racenet one), node 4 executes some of them, and the other
validators' checkers, re-scoring with transformers in fp32, pass every one they check within the spot check's
tolerance (docs/verification.md, "Other engines"); none of node 4's tasks is found invalid. Sampled requests are
answered by other executors: node 4 declines those routed to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import openai
import pytest

from racenet.chain.modules import inference, race
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.devnet import DEVNET_PASSPHRASE, Devnet
from racenet.ml.llamacpp_server import free_port, llama_server
from racenet.node.client import ChainClient
from tests.network.conftest import running_devnet
from tests.network.netutil import wait_for
from tests.network.test_checks_devnet import Ledger, expired
from tests.network.test_inference_devnet import MODEL, api_key, developer  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.network, pytest.mark.timeout(1200)]

LLAMA_NODE = 4
QUESTIONS = ["Name a color.", "Why is the sky blue?", "Describe a cat.", "Tell me about apples.", "Count to three."]
SAMPLED = 4
"""Sampled requests sent after the greedy ones: node 4 (a stock engine) declines those routed to it."""
MAX_TOKENS = 16
MAX_REQUESTS = 40
CHECKS_WANTED = 3
"""Checks of node 4's answers the test waits for (each validator owes one of a new node's task with probability
weight share, so three others check a task ~0.75 times on average)."""


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's server on SmolLM2's GGUF, one thread, stopped after the module."""
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    with llama_server(free_port(), log) as url:
        yield url


@pytest.fixture(scope="module")
def net(llama_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    backend = f"{LLAMA_NODE}=openai:{llama_url}"
    with running_devnet(tmp_path_factory, "llamacpp-devnet", "0.2,0.2,0.2,0.2", "--backend", backend) as directory:
        yield Devnet.open(directory)


@pytest.fixture(scope="module")
def chain(net: Devnet) -> ChainClient:
    return ChainClient(net.state.nodes[0].rpc_url, timeout=10)


def ask(client: openai.OpenAI, n: int) -> bytes:
    """Request n at temperature 0, streamed when n is odd; the request id."""
    question = QUESTIONS[n % len(QUESTIONS)]
    if n % 2 == 0:
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=MAX_TOKENS, temperature=0
        )
        assert answer.choices[0].message.content and answer.usage is not None
        return bytes.fromhex(answer.id.removeprefix("chatcmpl-"))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].usage is not None
    return bytes.fromhex(chunks[-1].id.removeprefix("chatcmpl-"))


def sample(client: openai.OpenAI, n: int) -> bytes | None:
    """Request n at temperature 0.8 (the request id), or None if no executor answered it (503)."""
    question = QUESTIONS[n % len(QUESTIONS)]
    try:
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=MAX_TOKENS, temperature=0.8
        )
    except openai.InternalServerError:
        return None
    return bytes.fromhex(answer.id.removeprefix("chatcmpl-"))


def executor_of(chain: ChainClient, request_id: bytes) -> bytes:
    """The executor the chain routed the request to (from the open request, or its receipt once finished)."""
    record = chain.query(inference.REQUEST, request_id)
    assert record is not None
    routed = record.request or record.receipt
    assert routed is not None
    return bytes(routed.executor)


def checker_findings(net: Devnet, request_ids: set[bytes]) -> list[str]:
    """The checkers' log lines about these requests (pass or FAIL, misses, largest logprob error)."""
    pattern = re.compile(r"task ([0-9a-f]{64}): (pass|FAIL).*")
    found = []
    for node in net.state.nodes:
        if node.index == LLAMA_NODE:
            continue
        for line in net.state.log_path(node, "node").read_text(errors="replace").splitlines():
            match = pattern.search(line)
            if match and bytes.fromhex(match.group(1)) in request_ids:
                found.append(f"{node.name}: {match.group(0)}")
    return found


def test_a_node_serving_through_llama_cpp_answers_the_openai_client_and_passes_spot_checks(
    net: Devnet,
    chain: ChainClient,
    developer: PrivateKey,  # noqa: F811
) -> None:
    wait_for("four servers", lambda: len(chain.query(inference.SERVERS, MODEL).servers) == 4, timeout=300)
    wait_for("four nodes with weight", lambda: len([n for n in chain.query(race.NODES).nodes if n.weight]) == 4, 400)
    keyring = Keyring(net.state.dir / "keyring")
    llama = keyring.load(net.state.nodes[LLAMA_NODE - 1].name, DEVNET_PASSPHRASE).public_key.address
    key = api_key(net, chain, developer, "llamacpp-dev")
    client = openai.OpenAI(base_url=net.state.nodes[0].api_url + "/v1", api_key=key, timeout=180, max_retries=0)
    ledger = Ledger(chain, chain.height())
    asked: list[bytes] = []
    served: dict[bytes, int] = {}
    """node 4's requests, with their number (odd: streamed to the client)."""

    def llama_checks() -> int:
        ledger.update()
        return sum(len(ledger.checks.get(r, [])) for r in served)

    for n in range(MAX_REQUESTS):
        try:
            asked.append(ask(client, n))
        except openai.InternalServerError as e:  # 503: no executor answered (routes change at a cycle's turn)
            print(f"request {n}: {e.message}")
            continue
        if executor_of(chain, asked[-1]) == llama:
            served[asked[-1]] = n
        if {n % 2 for n in served.values()} == {0, 1} and llama_checks() >= CHECKS_WANTED:
            break
    assert {n % 2 for n in served.values()} == {0, 1}, f"node 4 served {sorted(served.values())} of {len(asked)}"
    wait_for("every task settled", ledger.watch(asked), timeout=300)
    assert all(r in ledger.tasks or expired(chain, r) for r in asked)

    ours = set(ledger.of(llama))
    checks = [passed for r in ours for passed in ledger.checks.get(r, [])]
    findings = checker_findings(net, ours)
    print(f"\nnode 4 (llama.cpp) served {len(ours)} of {len(asked)} requests; {len(checks)} checks:")
    print("\n".join(findings))
    assert len(checks) >= CHECKS_WANTED, "too few of node 4's answers were checked to judge"
    assert all(checks), "an honest llama.cpp answer failed a spot check"
    assert not ours & ledger.caught, "an honest llama.cpp answer was found invalid"
    sampled = [sample(client, n) for n in range(SAMPLED)]
    answered = [r for r in sampled if r is not None]
    assert answered and all(executor_of(chain, r) != llama for r in answered), "node 4 passes sampled requests on"
