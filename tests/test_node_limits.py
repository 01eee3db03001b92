"""The node API's limits before any expensive work (security review finding M9).

Token buckets on a fake clock (refill, `Retry-After`, a bounded key table), the body limit on hand-made ASGI
requests (a declared Content-Length over the limit is refused unread, a chunked body is cut off at the limit),
and the app: bursts over the per-credential, per-IP and in-flight limits are 429s in OpenAI's shape with
`Retry-After`, which the official `openai` client raises as `RateLimitError`, and none reaches the transfer agent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.types import Message

from racenet.ml.backend import FinishEvent, GenerationEvent, TokenEvent, Usage
from racenet.node.api import create_app
from racenet.node.client import ChainClient
from racenet.node.executor import Executor
from racenet.node.limits import ConcurrencyLimiter, Limits, RateLimiter, credential_key, read_limited_body
from racenet.node.openai_format import ApiError, Charge
from racenet.node.transfer_agent import TransferAgent

API_KEY = "rk-" + "11" * 32
BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "Name three colors."}], "max_tokens": 4}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def retry_after(error: ApiError) -> int:
    """The `Retry-After` seconds an error carries."""
    return int(error.headers["Retry-After"])


# --- the token bucket --------------------------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_429_with_retry_after_and_refills() -> None:
    """Capacity 2 at 0.25/s: two requests, then 429 with Retry-After 4 s (one token at 0.25/s), 3 s after one
    second has passed, and one request again once the token is back."""
    clock = FakeClock()
    limiter = RateLimiter(capacity=2, rate=0.25, clock=clock)
    limiter.take("k")
    limiter.take("k")
    with pytest.raises(ApiError) as refused:
        limiter.take("k")
    error = refused.value
    assert (error.status, error.type, error.code) == (429, "requests", "rate_limit_exceeded")
    assert retry_after(error) == 4
    clock.now += 1
    with pytest.raises(ApiError) as later:
        limiter.take("k")
    assert retry_after(later.value) == 3
    clock.now += 3
    limiter.take("k")
    with pytest.raises(ApiError):
        limiter.take("k")


def test_retry_after_is_at_least_one_second() -> None:
    """A fast bucket whose next token is a fraction of a second away still says `Retry-After: 1`."""
    limiter = RateLimiter(capacity=1, rate=100.0, clock=FakeClock())
    limiter.take("k")
    with pytest.raises(ApiError) as refused:
        limiter.take("k")
    assert retry_after(refused.value) == 1


def test_a_bucket_never_refills_past_its_capacity_and_keys_are_independent() -> None:
    """An idle hour buys no more than the burst; one key's empty bucket does not limit another."""
    clock = FakeClock()
    limiter = RateLimiter(capacity=3, rate=1.0, clock=clock)
    clock.now += 3600
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(ApiError):
        limiter.take("a")
    limiter.take("b")


def test_the_key_table_is_bounded_and_evicts_the_least_recently_used() -> None:
    """Past `max_keys` the least recently used bucket goes (touching a key keeps it); memory stays bounded."""
    clock = FakeClock()
    limiter = RateLimiter(capacity=1, rate=0.001, max_keys=3, clock=clock)
    for name in ("a", "b", "c"):
        limiter.take(name)
    with pytest.raises(ApiError):
        limiter.take("a")  # a is now the most recently used, b the least
    limiter.take("d")
    assert list(limiter.buckets) == ["c", "a", "d"]
    for i in range(1000):
        limiter.take(f"spray-{i}")
    assert len(limiter.buckets) == 3


def test_limits_must_be_positive() -> None:
    """A zero or negative limit is a configuration error, not a disabled limit."""
    with pytest.raises(ValueError):
        Limits(key_rate=0)
    with pytest.raises(ValueError):
        Limits(max_in_flight_per_key=0)


def test_concurrency_slots_are_per_key_and_released_once() -> None:
    """At most `limit` in flight per key; a release frees one slot, a second release of it nothing."""
    limiter = ConcurrencyLimiter(2)
    first, _second = limiter.acquire("k"), limiter.acquire("k")
    with pytest.raises(ApiError) as refused:
        limiter.acquire("k")
    assert (refused.value.status, retry_after(refused.value)) == (429, 1)
    limiter.acquire("other").release()
    first.release()
    first.release()
    limiter.acquire("k")
    with pytest.raises(ApiError):
        limiter.acquire("k")
    assert limiter.in_flight == {"k": 2}


def test_the_claimed_credential_is_read_from_headers_alone() -> None:
    """Bearer tokens and signing public keys become fixed-size keys; spellings hex decoding treats alike share one."""
    bearer = credential_key({"authorization": f"Bearer {API_KEY}"})
    assert bearer is not None and bearer.startswith("bearer:") and len(bearer) == len("bearer:") + 64
    assert credential_key({"authorization": f"bearer  {API_KEY.upper()} "}) == bearer
    signed = credential_key({"x-racenet-public-key": "AB" * 32})
    assert signed == credential_key({"x-racenet-public-key": "ab" * 32}) != bearer
    assert credential_key({}) is None
    assert credential_key({"authorization": "Basic xyz"}) is None


# --- the body limit ----------------------------------------------------------------------------------------


def request_of(headers: dict[str, str], chunk: bytes, chunks: int | None) -> tuple[Request, list[int]]:
    """A POST whose body arrives as `chunks` copies of `chunk` (None: without end), and the count of reads."""
    reads = [0]

    async def receive() -> Message:
        reads[0] += 1
        more = chunks is None or reads[0] < chunks
        return {"type": "http.request", "body": chunk, "more_body": more}

    raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": raw_headers, "query_string": b""}
    return Request(scope, receive), reads


def test_a_declared_content_length_over_the_limit_is_413_without_reading() -> None:
    """Content-Length over the limit: 413 `request_too_large` before a single byte is received."""
    request, reads = request_of({"content-length": "1025"}, b"x" * 1025, 1)
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_limited_body(request, 1024))
    assert (refused.value.status, refused.value.type, refused.value.code) == (
        413,
        "invalid_request_error",
        "request_too_large",
    )
    assert reads == [0]


def test_a_chunked_body_over_the_limit_is_cut_off_at_the_limit() -> None:
    """An endless chunked body (no Content-Length): 413 on the chunk that crosses the limit, nothing read after."""
    request, reads = request_of({}, b"x" * 100, None)
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_limited_body(request, 1000))
    assert refused.value.status == 413
    assert reads == [11]


def test_a_body_within_the_limit_is_read_whole() -> None:
    """Chunks up to exactly the limit are joined; a lying small Content-Length does not stop the count."""
    request, _ = request_of({}, b"y" * 250, 4)
    assert asyncio.run(read_limited_body(request, 1000)) == b"y" * 1000
    lying, _ = request_of({"content-length": "10"}, b"z" * 600, 2)
    with pytest.raises(ApiError):
        asyncio.run(read_limited_body(lying, 1000))


def test_a_malformed_content_length_is_400() -> None:
    """Content-Length that is not a number is refused."""
    request, _ = request_of({"content-length": "-5"}, b"", 1)
    with pytest.raises(ApiError) as refused:
        asyncio.run(read_limited_body(request, 1000))
    assert refused.value.status == 400


# --- the app ---------------------------------------------------------------------------------------------------


class StubAgent:
    """Stands in for the transfer agent: counts the requests that reach it and answers one word, or refuses
    like an unfunded account (402); with a `gate`, `open` waits for it (so a request stays in flight)."""

    def __init__(self, funded: bool = True, gate: threading.Event | None = None) -> None:
        self.funded = funded
        self.gate = gate
        self.entered = threading.Event()
        self.opened = 0
        self.lock = threading.Lock()
        self.client = ChainClient("http://127.0.0.1:9", timeout=1)  # the explorer's; no chain answers there

    def models(self) -> tuple[()]:
        """No models (unused here)."""
        return ()

    def open(self, *args: Any) -> Any:
        """Count the request; wait for the gate; refuse if unfunded (the arguments are not looked at)."""
        gate = self.gate
        with self.lock:
            self.opened += 1
        self.entered.set()
        if gate is not None and not gate.wait(60):
            raise AssertionError("the gate was never opened")
        if not self.funded:
            raise ApiError(402, "the account cannot pay", "insufficient_quota", "insufficient_quota")
        return SimpleNamespace(id_hex="ab" * 32)

    def forward(self, opened: Any) -> Iterator[GenerationEvent]:
        """One token, then the finish."""
        yield TokenEvent("red", 1, "red", -0.5)
        yield FinishEvent("stop", Usage(3, 1))

    def charge(self, opened: Any, usage: Usage) -> Charge:
        """Free, and never settled (there is no chain)."""
        return Charge(usage.prompt_tokens, usage.completion_tokens, 0, False)


def app_of(agent: StubAgent, limits: Limits) -> FastAPI:
    """A node app over the stub agent (the executor endpoint is not used)."""
    return create_app(cast(TransferAgent, agent), cast(Executor, object()), limits)


def post(client: TestClient, headers: dict[str, str], content: bytes | None = None) -> Any:
    """POST a chat completion."""
    data = json.dumps(BODY).encode() if content is None else content
    return client.post("/v1/chat/completions", content=data, headers=headers)


def assert_rate_limited(answer: Any) -> None:
    """A 429 in OpenAI's error shape with an integer Retry-After of at least one second."""
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)


def test_a_burst_from_one_unfunded_key_is_429_before_the_agent() -> None:
    """An unfunded keypair's requests each cost the agent work (402) until the key's burst is spent; after
    that they are 429 with Retry-After and never reach the agent. Another key is not affected."""
    agent = StubAgent(funded=False)
    client = TestClient(app_of(agent, Limits(key_burst=2, key_rate=0.001)))
    signer = {"x-racenet-public-key": "cd" * 32, "x-racenet-signature": "00" * 64, "x-racenet-request-id": "00" * 32}
    assert [post(client, signer).status_code for _ in range(2)] == [402, 402]
    assert_rate_limited(post(client, signer))
    assert agent.opened == 2
    assert post(client, {**signer, "x-racenet-public-key": "ef" * 32}).status_code == 402
    assert agent.opened == 3


def test_fresh_keypairs_from_one_address_hit_the_per_ip_limit() -> None:
    """A new credential per request does not get around the client IP's bucket."""
    agent = StubAgent(funded=False)
    client = TestClient(app_of(agent, Limits(ip_burst=3, ip_rate=0.001)))
    answers = [post(client, {"x-racenet-public-key": f"{i:02x}" * 32}) for i in range(4)]
    assert [a.status_code for a in answers[:3]] == [402, 402, 402]
    assert_rate_limited(answers[3])
    assert agent.opened == 3


def test_a_flood_of_explorer_pages_from_one_address_is_429() -> None:
    """The explorer reads the chain for every page: one client IP cannot spend the node's RPC on it unbounded."""
    client = TestClient(app_of(StubAgent(), Limits(ip_burst=3, ip_rate=0.001)))
    answers = [client.get("/explorer/api/live") for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [503] * 3, "served (the stub's chain does not answer)"
    assert_rate_limited(answers[3])


def test_the_openai_client_raises_rate_limit_error() -> None:
    """The official client: two completions, then `openai.RateLimitError` with the 429's code and Retry-After."""
    agent = StubAgent()
    app = app_of(agent, Limits(key_burst=2, key_rate=0.001))
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=API_KEY, http_client=TestClient(app), max_retries=0)
    for _ in range(2):
        answer = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content == "red"
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 429
    assert (refused.value.code, refused.value.type) == ("rate_limit_exceeded", "requests")
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert agent.opened == 2


def test_a_key_with_a_request_in_flight_at_the_limit_is_429() -> None:
    """One in flight per key: while a request is held in the agent, the same key's next one is 429 (another
    key's is served); once it ends, the key is served again."""
    gate = threading.Event()
    agent = StubAgent(gate=gate)
    app = app_of(agent, Limits(max_in_flight_per_key=1))
    bearer = {"authorization": f"Bearer {API_KEY}"}
    held: list[int] = []
    thread = threading.Thread(target=lambda: held.append(post(TestClient(app), bearer).status_code))
    thread.start()
    try:
        assert agent.entered.wait(60)
        assert_rate_limited(post(TestClient(app), bearer))
        agent.gate = None
        assert post(TestClient(app), {"authorization": "Bearer rk-" + "22" * 32}).status_code == 200
    finally:
        gate.set()
        thread.join(60)
    assert held == [200]
    assert post(TestClient(app), bearer).status_code == 200


def test_a_finished_stream_gives_its_slot_back() -> None:
    """With one request in flight per key, streamed requests one after another are all served."""
    app = app_of(StubAgent(), Limits(max_in_flight_per_key=1))
    client = TestClient(app)
    content = json.dumps({**BODY, "stream": True}).encode()
    for _ in range(3):
        answer = post(client, {"authorization": f"Bearer {API_KEY}"}, content)
        assert answer.status_code == 200 and answer.text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_is_413_before_the_agent(chunked: bool) -> None:
    """A body over the limit, declared or chunked (no Content-Length), is 413 in OpenAI's shape, unparsed."""
    agent = StubAgent()
    client = TestClient(app_of(agent, Limits(max_body_bytes=512)))
    data = json.dumps({**BODY, "messages": [{"role": "user", "content": "x" * 1000}]}).encode()
    content: Any = iter([data[:300], data[300:]]) if chunked else data
    answer = client.post("/v1/chat/completions", content=content, headers={"authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"
    assert agent.opened == 0
