"""The OpenAI-compatible HTTP adapter against a fake server on 127.0.0.1 that serves canned answers (vLLM-, llama.cpp-
and llama-cpp-python-shaped), and the local tokenizer that names token ids llama-cpp-python leaves out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from racenet.ml.backend import ChatMessage, GenerationRequest, TokenEvent, collect
from racenet.ml.errors import BackendError, NotSupportedError
from racenet.ml.local_tokenizer import LocalTokenizer, packaged_tokenizer
from racenet.ml.openai_http import OpenAIHTTPBackend, _sse_data

MODEL = "SmolLM2-135M-Instruct"
MESSAGES: list[ChatMessage] = [{"role": "user", "content": "What is the capital of France?"}]


@dataclass
class Canned:
    """One canned answer: a JSON body, or a list of SSE `data` payloads when `events` is set."""

    status: int = 200
    body: Any = None
    events: list[str] | None = None
    delay: float = 0.0


@dataclass
class FakeServer:
    url: str
    routes: dict[tuple[str, str], Canned] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)


def make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

        def do_GET(self) -> None:
            self.answer("GET", None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.answer("POST", json.loads(self.rfile.read(length)))

        def answer(self, method: str, body: Any) -> None:
            server.requests.append((method, self.path, body))
            server.authorization.append(self.headers.get("Authorization"))
            canned = server.routes.get((method, self.path))
            if canned is None:
                canned = Canned(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            time.sleep(canned.delay)
            self.send_response(canned.status)
            if canned.events is None:
                payload = json.dumps(canned.body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for data in canned.events:
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here; keep test output quiet."""


@contextmanager
def running_fake() -> Iterator[FakeServer]:
    """A fake OpenAI-compatible server on a free 127.0.0.1 port, shut down on exit."""
    state = FakeServer(url="")
    httpd = QuietServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with running_fake() as state:
        yield state


def entry(token: str, logprob: float, top: list[tuple[str, float]], token_id: int | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
    }
    if token_id is not None:
        value["id"] = token_id
    return value


def chunk(content: str | None, entries: list[dict[str, Any]], finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "logprobs": {"content": entries} if entries else None}
    choice["finish_reason"] = finish
    return json.dumps({"id": "c1", "object": "chat.completion.chunk", "model": MODEL, "choices": [choice]})


STREAM = [
    json.dumps({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}),
    chunk("The", [entry("The", -0.1, [("The", -0.1), ("A", -2.5)], token_id=504)]),
    chunk(" capital", [entry(" capital", -0.02, [(" capital", -0.02), (" city", -4.0)], token_id=3575)]),
    chunk(" is Paris", [entry(" is", -0.3, [(" is", -0.3)]), entry(" Paris", -0.05, [(" Paris", -0.05)])]),
    chunk(None, [], finish="stop"),
    json.dumps({"id": "c1", "choices": [], "usage": {"prompt_tokens": 37, "completion_tokens": 4}}),
    "[DONE]",
]


def request(**changes: Any) -> GenerationRequest:
    return GenerationRequest(model=MODEL, messages=MESSAGES, **changes)


def test_streaming_chat_maps_to_token_events(fake: FakeServer) -> None:
    fake.routes["POST", "/v1/chat/completions"] = Canned(events=STREAM)
    with OpenAIHTTPBackend(fake.url, api_key="sk-test") as backend:
        completion = collect(backend.generate(request(max_tokens=8, seed=5, stop=("\n",), top_logprobs=2)))
    assert completion.text == "The capital is Paris"
    assert [t.token for t in completion.tokens] == ["The", " capital", " is", " Paris"]
    assert [t.text for t in completion.tokens] == ["The", " capital", " is", " Paris"]
    assert completion.token_ids == [504, 3575, None, None]
    assert [t.logprob for t in completion.tokens] == [-0.1, -0.02, -0.3, -0.05]
    assert [(a.token, a.logprob) for a in completion.tokens[0].top_logprobs] == [("The", -0.1), ("A", -2.5)]
    assert (completion.finish_reason, completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        "stop",
        37,
        4,
    )
    _, path, body = fake.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["logprobs"] is True and body["top_logprobs"] == 2 and body["stream"] is True
    assert (body["repeat_penalty"], body["repetition_penalty"], body["frequency_penalty"]) == (1.0, 1.0, 0.0)
    assert body["stream_options"] == {"include_usage": True}
    assert (body["seed"], body["stop"], body["max_tokens"], body["model"]) == (5, ["\n"], 8, MODEL)


def test_non_streaming_chat_maps_to_token_events(fake: FakeServer) -> None:
    entries = [entry("token_id:504", -0.1, [("token_id:504", -0.1)]), entry("token_id:3575", -0.5, [])]
    fake.routes["POST", "/v1/chat/completions"] = Canned(
        body={
            "id": "c2",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "The capital"},
                    "logprobs": {"content": entries},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 37, "completion_tokens": 2, "total_tokens": 39},
        }
    )
    backend = OpenAIHTTPBackend(fake.url, stream=False, extra_body={"return_tokens_as_token_ids": True})
    completion = collect(backend.generate(request(max_tokens=2)))
    assert completion.text == "The capital"
    assert completion.token_ids == [504, 3575]
    assert completion.tokens[0].top_logprobs[0].token_id == 504
    assert (completion.finish_reason, completion.usage.total_tokens) == ("length", 39)
    _, _, body = fake.requests[-1]
    assert body["stream"] is False and body["return_tokens_as_token_ids"] is True and "stream_options" not in body


def test_score_uses_echoed_prompt_logprobs(fake: FakeServer) -> None:
    fake.routes["GET", "/v1/models"] = Canned(body={"object": "list", "data": [{"id": MODEL, "object": "model"}]})
    fake.routes["POST", "/v1/completions"] = Canned(
        body={
            "choices": [
                {
                    "text": "",
                    "logprobs": {
                        "tokens": ["<s>", "Hi", " there", "!", " How"],
                        "token_logprobs": [None, -3.0, -0.5, -2.0, -0.7],
                        "top_logprobs": [
                            None,
                            {"Hi": -3.0, "Hello": -1.0},
                            {" there": -0.5},
                            {".": -0.1, ",": -1.5, "!": -2.0},
                            {" How": -0.7},
                        ],
                    },
                    "finish_reason": "length",
                }
            ]
        }
    )
    backend = OpenAIHTTPBackend(fake.url)
    assert backend.models() == [MODEL]
    scores = backend.score([1, 2], [3, 4])
    assert [(s.token_id, s.logprob, s.rank) for s in scores] == [(3, -0.5, 1), (4, -2.0, 3)]
    _, path, body = fake.requests[-1]
    assert path == "/v1/completions"
    assert body["prompt"] == [1, 2, 3, 4] and body["echo"] is True and body["max_tokens"] == 1
    assert body["logprobs"] == 20 and body["model"] == MODEL


def test_score_without_echo_support_is_not_supported(fake: FakeServer) -> None:
    with pytest.raises(NotSupportedError, match="re-scoring"):
        OpenAIHTTPBackend(fake.url).score([1], [2], model=MODEL)
    fake.routes["POST", "/v1/completions"] = Canned(
        body={"choices": [{"text": "x", "logprobs": None, "finish_reason": "length"}]}
    )
    with pytest.raises(NotSupportedError, match="did not echo"):
        OpenAIHTTPBackend(fake.url).score([1], [2], model=MODEL)


def test_tokenize_chat_uses_the_tokenize_endpoint(fake: FakeServer) -> None:
    fake.routes["POST", "/tokenize"] = Canned(body={"count": 3, "max_model_len": 8192, "tokens": [1, 2, 3]})
    assert OpenAIHTTPBackend(fake.url).tokenize_chat(MESSAGES, model=MODEL) == [1, 2, 3]
    assert fake.requests[-1][2]["add_generation_prompt"] is True
    del fake.routes["POST", "/tokenize"]
    with pytest.raises(NotSupportedError, match="tokenize"):
        OpenAIHTTPBackend(fake.url).tokenize_chat(MESSAGES)


def test_server_errors_become_backend_errors(fake: FakeServer) -> None:
    fake.routes["POST", "/v1/chat/completions"] = Canned(500, {"error": {"message": "out of memory"}})
    with pytest.raises(BackendError, match="HTTP 500: out of memory") as caught:
        collect(OpenAIHTTPBackend(fake.url).generate(request()))
    assert caught.value.status_code == 500


def test_text_without_logprobs_is_refused(fake: FakeServer) -> None:
    events = [chunk("Paris", []), chunk(None, [], finish="stop"), "[DONE]"]
    fake.routes["POST", "/v1/chat/completions"] = Canned(events=events)
    with pytest.raises(BackendError, match="without logprobs"):
        collect(OpenAIHTTPBackend(fake.url).generate(request()))


def test_stream_without_usage_is_refused(fake: FakeServer) -> None:
    events = [chunk("Paris", [entry("Paris", -0.1, [])]), chunk(None, [], finish="stop"), "[DONE]"]
    fake.routes["POST", "/v1/chat/completions"] = Canned(events=events)
    stream = OpenAIHTTPBackend(fake.url).generate(request())
    assert isinstance(next(stream), TokenEvent)
    with pytest.raises(BackendError, match="finish_reason and usage"):
        next(stream)


def test_slow_server_times_out(fake: FakeServer) -> None:
    fake.routes["GET", "/v1/models"] = Canned(body={"data": []}, delay=1.0)
    with pytest.raises(BackendError, match="Timeout"):
        OpenAIHTTPBackend(fake.url, timeout=0.2).models()


def test_sse_parser_joins_multiline_data_and_skips_comments() -> None:
    lines = [": keep-alive", "", "event: message", "data: {", 'data: "a": 1}', "", "data:[DONE]"]
    assert list(_sse_data(lines)) == ['{\n"a": 1}', "[DONE]"]


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> LocalTokenizer:
    tokenizer = packaged_tokenizer(MODEL)
    assert tokenizer is not None and packaged_tokenizer("another-model") is None
    return tokenizer


def llama_cpp_python_entry(token: str, logprob: float) -> dict[str, Any]:
    """A logprobs entry as llama-cpp-python's server writes it: the token's text, no id, `bytes` null."""
    return {"token": token, "logprob": logprob, "bytes": None, "top_logprobs": [{"token": token, "logprob": logprob}]}


def test_llama_cpp_python_stream_gets_ids_and_usage_from_the_local_tokenizer(
    fake: FakeServer, smollm2_tokenizer: LocalTokenizer
) -> None:
    events = [
        chunk("The", [llama_cpp_python_entry("The", -0.1)]),
        chunk(" capital", [llama_cpp_python_entry(" capital", -0.2)]),
        chunk(None, [], finish="stop"),
        "[DONE]",
    ]
    fake.routes["POST", "/v1/chat/completions"] = Canned(events=events)
    backend = OpenAIHTTPBackend(fake.url, tokenizers={MODEL: smollm2_tokenizer}.get)
    completion = collect(backend.generate(request()))
    prompt = smollm2_tokenizer.tokenize_chat(MESSAGES)
    assert completion.text == "The capital"
    assert completion.token_ids == [smollm2_tokenizer.tokenizer.convert_tokens_to_ids(t) for t in ("The", "Ġcapital")]
    assert completion.tokens[1].top_logprobs[0].token_id == completion.token_ids[1]
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (len(prompt), 2)
    assert backend.tokenize_chat(MESSAGES, model=MODEL) == prompt
    assert not any(path.endswith("/tokenize") for _, path, _ in fake.requests), "counted locally"


def test_token_texts_name_one_id_or_none(smollm2_tokenizer: LocalTokenizer) -> None:
    vocab = smollm2_tokenizer.tokenizer
    assert smollm2_tokenizer.token_id(" Paris") == vocab.convert_tokens_to_ids("ĠParis")
    assert smollm2_tokenizer.token_id("\n") == vocab.convert_tokens_to_ids("Ċ")
    assert smollm2_tokenizer.token_id(" ") == vocab.convert_tokens_to_ids("Ġ"), "whole characters beat pieces"
    assert smollm2_tokenizer.token_id("") is None, "control tokens decode to nothing"
    assert smollm2_tokenizer.token_id("<|im_end|>") is None, "llama-cpp-python never reports control tokens' text"
    assert smollm2_tokenizer.token_id("not one token at all") is None
