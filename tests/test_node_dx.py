"""The developer experience through the official `openai` client, on the in-process network of
`tests.test_node_requests` (real chain, real transfer agent and executors, fake model).

`usage.cost` is what the chain's receipt charged (in nicoin), in a response and in a stream's last chunk;
`models.list()` shows prices and limits; legacy text completions work; `GET /v1/key` and `/v1/key/requests`
(and `racenet api-key balance|history`) show only the caller's own key; errors are OpenAI's, with `Retry-After`
on 429 and 503 and an `x-request-id` on every response.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from racenet.chain.modules.inference import ReceiptStatus
from racenet.cli.main import cli
from racenet.node import transfer_agent
from racenet.node.limits import Limits
from tests.nodefake import WORDS, FakeBackend
from tests.test_node_requests import (
    DEV,
    EXPIRY,
    MAX_TOKENS,
    MODEL,
    NODES,
    POOR,
    PRICE,
    PROMPT,
    PROMPT_TOKENS,
    Network,
    authorize_key,
    body,
    build,
    host,
)

API = f"http://{host(0)}/v1"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT[0]["content"]}]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """Three nodes; node 1's API is the one developers call."""
    yield from build(tmp_path, FakeBackend(MODEL))


def developer(net: Network, token: str) -> openai.OpenAI:
    """The official client on node 1's API with an API key (no retries: a test sees every answer)."""
    return openai.OpenAI(api_key=token, base_url=API, http_client=net.api, max_retries=0)


def extra(model: Any) -> dict[str, Any]:
    """The fields racenet adds to an `openai` response object."""
    return dict(model.model_extra or {})


def test_usage_carries_the_cost_the_chain_charged(net: Network) -> None:
    token, _ = authorize_key(net)
    client = developer(net, token)
    before = net.balance(DEV)
    reply = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    answer = reply.parse()
    request_id = bytes.fromhex(answer.id.removeprefix("chatcmpl-"))
    assert reply.headers["x-request-id"] == request_id.hex() == answer._request_id
    receipt = net.settled(request_id)
    assert answer.usage is not None and answer.usage.total_tokens == PROMPT_TOKENS + 4
    assert extra(answer.usage) == {"cost": receipt.cost, "cost_settled": True}
    assert receipt.cost == (PROMPT_TOKENS + 4) * PRICE == before - net.balance(DEV)


@pytest.mark.parametrize("include_usage", [False, True])
def test_the_last_stream_chunk_carries_the_cost(net: Network, include_usage: bool) -> None:
    token, _ = authorize_key(net)
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    stream = developer(net, token).chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=5, stream=True, stream_options=options
    )
    chunks: list[ChatCompletionChunk] = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(WORDS[:5])
    last = chunks[-1]
    assert last.usage is not None and all(c.usage is None for c in chunks[:-1])
    assert (last.choices == []) == include_usage
    receipt = net.settled(bytes.fromhex(last.id.removeprefix("chatcmpl-")))
    assert extra(last.usage) == {"cost": receipt.cost, "cost_settled": True}
    assert receipt.cost == (PROMPT_TOKENS + 5) * PRICE


def test_models_list_shows_prices_and_limits(net: Network) -> None:
    (model,) = developer(net, authorize_key(net)[0]).models.list()
    assert (model.id, model.owned_by) == (MODEL, "racenet")
    assert extra(model)["pricing"] == {"prompt": str(PRICE), "completion": str(PRICE), "unit": "nicoin"}
    assert extra(model)["price_per_token_nicoin"] == PRICE
    assert extra(model)["max_completion_tokens"] == MAX_TOKENS
    assert extra(model)["context_length"] > MAX_TOKENS
    client = developer(net, authorize_key(net)[0])
    assert client.models.retrieve(MODEL) == model
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_text_completions_streamed_and_not(net: Network) -> None:
    """`POST /v1/completions`: the prompt is read as one user message, so it costs what the same chat costs."""
    token, _ = authorize_key(net)
    client = developer(net, token)
    text = client.completions.create(model=MODEL, prompt=PROMPT[0]["content"], max_tokens=3, logprobs=1)
    assert text.object == "text_completion" and text.id.startswith("cmpl-")
    choice = text.choices[0]
    assert (choice.text, choice.finish_reason) == ("".join(WORDS[:3]), "length")
    assert choice.logprobs is not None and choice.logprobs.tokens == list(WORDS[:3])
    assert choice.logprobs.top_logprobs == [{"x": -3.0}] * 3
    receipt = net.settled(bytes.fromhex(text.id.removeprefix("cmpl-")))
    assert text.usage is not None and extra(text.usage)["cost"] == receipt.cost == (PROMPT_TOKENS + 3) * PRICE
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT[0]["content"], max_tokens=6, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "".join(WORDS)
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].usage is not None
    assert extra(chunks[-1].usage)["cost"] == (PROMPT_TOKENS + 6) * PRICE


def test_a_body_of_the_other_kind_is_400(net: Network) -> None:
    client = developer(net, authorize_key(net)[0])
    with pytest.raises(openai.BadRequestError, match="'prompt' is required"):
        client.post("/completions", body=body(), cast_to=object)
    with pytest.raises(openai.BadRequestError, match="'messages' is required"):
        client.post("/chat/completions", body={"model": MODEL, "prompt": "Hi"}, cast_to=object)
    with pytest.raises(openai.BadRequestError, match="not both"):
        client.post("/completions", body={**body(), "prompt": "Hi"}, cast_to=object)
    with pytest.raises(openai.BadRequestError, match="one prompt per request"):
        client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=2)
    net.chain.block()
    assert net.request_escrows() == []


def key_get(net: Network, path: str, token: str | None) -> Any:
    """GET an API-key endpoint of node 1 with `token` (or no credentials)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return net.api.get(path, headers=headers)


def test_a_key_sees_its_own_balance_and_history_and_nothing_else(net: Network) -> None:
    mine, mine_id = authorize_key(net)
    other, _ = authorize_key(net)
    client = developer(net, mine)
    answers = [client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=n) for n in (2, 3)]
    costs = [(PROMPT_TOKENS + n) * PRICE for n in (2, 3)]
    status = key_get(net, "/v1/key", mine).json()["data"]
    assert status["id"] == mine_id.hex() and status["balance"] == net.balance(DEV)
    assert (status["limit"], status["spent"], status["requests"]) == (10**12, sum(costs), 2)
    assert status["limit_remaining"] == 10**12 - sum(costs) and status["unit"] == "nicoin"
    history = key_get(net, "/v1/key/requests", mine).json()["data"]
    assert [h["id"] for h in history] == [a.id.removeprefix("chatcmpl-") for a in reversed(answers)]
    assert [(h["status"], h["cost"]) for h in history] == [("finished", costs[1]), ("finished", costs[0])]
    assert [h["id"] for h in key_get(net, "/v1/key/requests?limit=1", mine).json()["data"]] == [history[0]["id"]]
    assert key_get(net, "/v1/key/requests", other).json()["data"] == [], "another key of the same account"
    assert key_get(net, "/v1/key", other).json()["data"]["spent"] == 0
    for token, code in ((None, "missing_api_key"), ("rk-" + "00" * 32, "invalid_api_key"), ("sk-x", "invalid_api_key")):
        for path in ("/v1/key", "/v1/key/requests"):
            answer = key_get(net, path, token)
            assert (answer.status_code, answer.json()["error"]["code"]) == (401, code)
    bad_limit = key_get(net, "/v1/key/requests?limit=0", mine)
    assert (bad_limit.status_code, bad_limit.json()["error"]["param"]) == (400, "limit")
    assert key_get(net, "/v1/key/requests?limit=x", mine).status_code == 400


def test_the_cli_shows_a_keys_balance_and_history(net: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    token, key_id = authorize_key(net)
    answer = developer(net, token).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    monkeypatch.setattr(httpx, "Client", functools.partial(httpx.Client, transport=net.executors.transport))
    monkeypatch.setenv("RACENET_API_KEY", token)
    runner = CliRunner()
    shown = runner.invoke(cli, ["api-key", "balance", "--api", API])
    assert shown.exit_code == 0, shown.output
    assert key_id.hex() in shown.output and "spent" in shown.output and "balance" in shown.output
    as_json = json.loads(runner.invoke(cli, ["api-key", "balance", "--api", API, "--json"]).output)
    assert as_json["spent"] == (PROMPT_TOKENS + 2) * PRICE
    listed = runner.invoke(cli, ["api-key", "history", "--api", API])
    assert listed.exit_code == 0 and answer.id.removeprefix("chatcmpl-")[:16] in listed.output, listed.output
    refused = runner.invoke(cli, ["api-key", "balance", "--api", API, "--api-key", "rk-" + "00" * 32])
    assert refused.exit_code == 1 and "HTTP 401" in refused.output and "Traceback" not in refused.output


def test_errors_are_openai_shaped_with_their_codes(net: Network) -> None:
    token, _ = authorize_key(net)
    client = developer(net, token)
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES, max_tokens=2)
    assert unknown_model.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        developer(net, "rk-" + "00" * 32).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    poor = net.signed(body(), signer=POOR)
    assert (poor.status_code, poor.json()["error"]["code"]) == (402, "insufficient_quota")
    request_id = os.urandom(32)
    raw = json.dumps(body()).encode()
    headers = net.signed_headers(raw, request_id=request_id)
    assert net.api.post("/v1/chat/completions", content=raw, headers=headers).status_code == 200
    replay = net.api.post("/v1/chat/completions", content=raw, headers=headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "duplicate_request")
    for path, status, code in (("/v1/nothing", 404, "not_found"), ("/v1/models?x", 200, None)):
        answer = net.api.get(path)
        assert answer.status_code == status and answer.headers["x-request-id"].startswith("req_")
        if code:
            assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
            assert answer.json()["error"]["code"] == code
    wrong_method = net.api.delete("/v1/chat/completions")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    malformed = net.api.post("/v1/chat/completions", content=b"{", headers={"authorization": f"Bearer {token}"})
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]


def test_no_executor_is_503_with_retry_after(net: Network) -> None:
    net.executors.down.update(host(i) for i in range(len(NODES)))
    with pytest.raises(openai.InternalServerError) as refused:
        developer(net, authorize_key(net)[0]).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert refused.value.status_code == 503 and refused.value.code == "no_executor"
    assert int(refused.value.response.headers["retry-after"]) >= 1
    request_id = bytes.fromhex(refused.value.response.headers["x-request-id"])
    net.chain.until(net.chain.height() + EXPIRY + 1)
    receipt = net.receipt(request_id)
    assert receipt is not None and receipt.status == ReceiptStatus.EXPIRED, "the id finds the refund"


def test_a_flood_is_429_with_retry_after(tmp_path: Path) -> None:
    """Over the key's burst the official client raises `RateLimitError` with `Retry-After`; nothing more is opened."""
    for net in build(tmp_path, FakeBackend(MODEL), Limits(key_burst=3, key_rate=0.01)):
        client = developer(net, authorize_key(net)[0])
        for _ in range(3):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
        broadcasts = net.chain.broadcasts
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
        assert refused.value.code == "rate_limit_exceeded"
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert refused.value.response.headers["x-request-id"].startswith("req_")
        assert net.chain.broadcasts == broadcasts, "a refused request opens nothing on chain"


def test_a_bug_is_a_500_without_internals(net: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception becomes OpenAI's 500 with a request id; the client sees no traceback."""

    def broken() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(net.agents[0], "models", broken)
    client = TestClient(net.api.app, raise_server_exceptions=False)
    answer = client.get("/v1/models")
    assert answer.status_code == 500 and answer.headers["x-request-id"].startswith("req_")
    assert answer.json()["error"]["code"] == "internal_error" and "secret" not in answer.text


def test_an_unsettled_cost_says_so_and_the_history_shows_the_refund(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executors that never send their Finish: past the settle timeout `usage` reports what the Finish would
    charge with `cost_settled: false`; the request expires, and the key's history shows it refunded (cost 0)."""
    monkeypatch.setattr(transfer_agent, "SETTLE_TIMEOUT", 0.5)
    for executor in net.executor_objects:
        monkeypatch.setattr(executor, "_settle", lambda *args: None)
    token, _ = authorize_key(net)
    before = net.balance(DEV)
    answer = developer(net, token).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    assert answer.usage is not None
    assert extra(answer.usage) == {"cost": (PROMPT_TOKENS + 4) * PRICE, "cost_settled": False}
    net.chain.until(net.chain.height() + EXPIRY + 1)
    (entry,) = key_get(net, "/v1/key/requests", token).json()["data"]
    assert (entry["id"], entry["status"], entry["cost"]) == (answer.id.removeprefix("chatcmpl-"), "expired", 0)
    assert net.balance(DEV) == before
