"""A backend that forwards to any OpenAI-compatible server returning logprobs (vLLM, SGLang, llama.cpp server).

Operators with GPUs run the engine they already know and point the node at it. Generation uses
`/v1/chat/completions` with `logprobs: true, top_logprobs: k` and no repetition penalties (`NO_PENALTIES`),
streamed as server-sent events (or in one response with `stream=False`), and maps each reported token to a
`TokenEvent`. Re-scoring uses the legacy `/v1/completions` endpoint with the prompt given as token ids and
`echo: true, logprobs: k`, which vLLM supports. It asks for `max_tokens: 1` and ignores that one new token, because
vLLM refuses `max_tokens: 0`; a server that does not echo the prompt's logprobs (llama.cpp's, at the time of
writing) raises `NotSupportedError`, and llama-cpp-python's server, which refuses token-id prompts with an HTTP 500,
a `BackendError`. Nothing a node runs re-scores over HTTP: checks use the in-process model.
`tokenize_chat` uses the model's own tokenizer when `tokenizers` has one for it (`racenet.ml.local_tokenizer`: the
network counts prompt tokens with it, and llama-cpp-python's server has no chat tokenizer), else vLLM's `/tokenize`.

Token ids: the OpenAI format reports token strings, not ids. llama.cpp's C++ server adds an `id` to each entry, and
vLLM renders tokens as `token_id:<n>` when asked with `extra_body={"return_tokens_as_token_ids": True}`; both are
understood. llama-cpp-python's server reports neither: then a token's id is the one its text names to the model's
own tokenizer (`LocalTokenizer.token_id`), and None without one. Usage is required (asked with
`stream_options.include_usage`), since the node bills by it; a stream without it (llama-cpp-python's) is counted
with the model's tokenizer: the prompt's tokens, and one completion token per reported logprob entry. Every request
has timeouts; transport failures and non-OpenAI answers raise `BackendError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from racenet.ml.backend import (
    ChatMessage,
    FinishEvent,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    TokenEvent,
    TokenScore,
    TopLogprob,
    Usage,
)
from racenet.ml.errors import BackendError, NotSupportedError
from racenet.ml.local_tokenizer import LocalTokenizer

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
NOT_SUPPORTED_STATUS = frozenset({400, 404, 405, 422, 501})
TOKEN_ID_PREFIX = "token_id:"
NO_PENALTIES: dict[str, float] = {
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "repeat_penalty": 1.0,
    "repetition_penalty": 1.0,
}
"""Sent with every generation: a racenet request samples the model's own distribution, and engines that penalize
repeats by default (llama-cpp-python's `repeat_penalty` 1.1, even at temperature 0; vLLM's and SGLang's
`repetition_penalty` from a model's generation config) would otherwise answer what a check cannot replay."""


class OpenAIHTTPBackend:
    """Talks to one OpenAI-compatible server at `base_url` (e.g. `http://127.0.0.1:8000/v1`).

    `extra_body` is merged into every request (engine-specific options); `score_top_logprobs` is how many
    alternatives re-scoring asks for, which bounds the ranks it can tell apart; `tokenizers` gives a model's own
    tokenizer by name (None if it has none here), which counts its prompt tokens and names the token ids a server
    leaves out (`racenet.ml.local_tokenizer.packaged_tokenizer`). Thread-safe (httpx clients are).
    """

    replays_sampling = False
    """The server draws with its own RNG: its sampled answers cannot be replayed, so it takes greedy requests only."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        stream: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        score_top_logprobs: int = 20,
        tokenizers: Callable[[str], LocalTokenizer | None] | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.stream = stream
        self.score_top_logprobs = score_top_logprobs
        self._tokenizers = tokenizers
        self._extra_body = dict(extra_body or {})
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAIHTTPBackend:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def models(self) -> list[str]:
        """The model ids the server lists at `/models`."""
        data = self._request("GET", "/models")
        try:
            return [str(entry["id"]) for entry in data["data"]]
        except (KeyError, TypeError) as exc:
            raise BackendError(f"{self.base_url}/models: not an OpenAI model list ({exc!r})") from exc

    def generate(self, request: GenerationRequest) -> Generator[GenerationEvent, None, None]:
        """Stream a chat completion from the server, one `TokenEvent` per reported token, then a `FinishEvent`."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "logprobs": True,
            "top_logprobs": request.top_logprobs,
            "stream": self.stream,
            **NO_PENALTIES,
            **self._extra_body,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        tokenizer = self._tokenizer(request.model)
        if self.stream:
            body["stream_options"] = {"include_usage": True}
            return self._stream(body, tokenizer, request.messages)
        return self._complete(body, tokenizer)

    def tokenize_chat(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> list[int]:
        """Prompt token ids, chat template applied and assistant turn opened: from the model's own tokenizer if
        there is one, else from the server's `/tokenize` (vLLM)."""
        tokenizer = self._tokenizer(model)
        if tokenizer is not None:
            return tokenizer.tokenize_chat(messages)
        body: dict[str, Any] = {
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "add_generation_prompt": True,
        }
        if model is not None:
            body["model"] = model
        root = self.base_url.removesuffix("/v1")
        data = self._request("POST", f"{root}/tokenize", body, unsupported="tokenizing chats (/tokenize)")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise BackendError(f"{root}/tokenize: no list of token ids in the answer")
        return tokens

    def score(
        self, prompt_token_ids: Sequence[int], completion_token_ids: Sequence[int], *, model: str | None = None
    ) -> list[TokenScore]:
        """Re-score a completion via `/completions` with `echo`: the logprobs the server reports for its prompt."""
        prompt, completion = list(prompt_token_ids), list(completion_token_ids)
        if not completion:
            return []
        body: dict[str, Any] = {
            "model": model if model is not None else self.models()[0],
            "prompt": prompt + completion,
            "echo": True,
            "logprobs": self.score_top_logprobs,
            "max_tokens": 1,
            "temperature": 0.0,
            **self._extra_body,
        }
        data = self._request("POST", "/completions", body, unsupported="re-scoring (echo with logprobs)")
        try:
            logprobs = data["choices"][0]["logprobs"]
            token_logprobs: list[float | None] = logprobs["token_logprobs"]
            top: list[Mapping[str, float] | None] = logprobs.get("top_logprobs") or []
        except (KeyError, IndexError, TypeError) as exc:
            raise NotSupportedError(f"{self.base_url}/completions did not echo prompt logprobs ({exc!r})") from exc
        start = len(prompt)
        if len(token_logprobs) < start + len(completion) or len(top) < start + len(completion):
            raise NotSupportedError(f"{self.base_url}/completions echoed fewer logprobs than prompt tokens")
        scores = []
        for i, token_id in enumerate(completion):
            logprob, alternatives = token_logprobs[start + i], top[start + i] or {}
            if logprob is None:
                raise BackendError(f"{self.base_url}/completions: no logprob for completion token {i}")
            rank = 1 + sum(1 for value in alternatives.values() if value > logprob)
            scores.append(TokenScore(token_id=token_id, logprob=float(logprob), rank=rank))
        return scores

    def _tokenizer(self, model: str | None) -> LocalTokenizer | None:
        """The model's own tokenizer, if `tokenizers` has one for it."""
        return None if model is None or self._tokenizers is None else self._tokenizers(model)

    def _stream(
        self, body: dict[str, Any], tokenizer: LocalTokenizer | None, messages: Sequence[ChatMessage]
    ) -> Generator[GenerationEvent, None, None]:
        url = f"{self.base_url}/chat/completions"
        finish: FinishReason | None = None
        usage: Usage | None = None
        pending = ""
        tokens = 0
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _http_error(url, response)
                for data in _sse_data(response.iter_lines()):
                    if data == "[DONE]":
                        break
                    chunk = _json_object(url, data)
                    if "error" in chunk:
                        raise BackendError(f"{url}: {_error_message(chunk)}")
                    usage = _usage(url, chunk["usage"]) if chunk.get("usage") else usage
                    for choice in chunk.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        pending += (choice.get("delta") or {}).get("content") or ""
                        entries = _logprob_entries(choice)
                        if entries:
                            tokens += len(entries)
                            for entry, text in zip(entries, _split_text(pending, entries), strict=True):
                                yield _token_event(url, entry, text, tokenizer)
                            pending = ""
                        if choice.get("finish_reason"):
                            finish = _finish_reason(url, choice["finish_reason"])
        except httpx.HTTPError as exc:
            raise BackendError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if pending and not tokens:
            raise BackendError(f"{url}: the server returned text without logprobs; it must support logprobs")
        if usage is None and tokenizer is not None:
            usage = Usage(prompt_tokens=len(tokenizer.tokenize_chat(messages)), completion_tokens=tokens)
        if finish is None or usage is None:
            raise BackendError(f"{url}: the stream ended without a finish_reason and usage")
        yield FinishEvent(finish, usage, pending)

    def _complete(
        self, body: dict[str, Any], tokenizer: LocalTokenizer | None
    ) -> Generator[GenerationEvent, None, None]:
        url = f"{self.base_url}/chat/completions"
        data = self._request("POST", "/chat/completions", body)
        try:
            choice = data["choices"][0]
            content: str = choice["message"].get("content") or ""
            finish = _finish_reason(url, choice["finish_reason"])
            usage = _usage(url, data["usage"])
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"{url}: not an OpenAI chat completion ({exc!r})") from exc
        entries = _logprob_entries(choice)
        if content and not entries:
            raise BackendError(f"{url}: the server returned text without logprobs; it must support logprobs")
        for entry, text in zip(entries, _split_text(content, entries), strict=True):
            yield _token_event(url, entry, text, tokenizer)
        yield FinishEvent(finish, usage, "" if entries else content)

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, unsupported: str | None = None
    ) -> dict[str, Any]:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if unsupported is not None and response.status_code in NOT_SUPPORTED_STATUS:
            raise NotSupportedError(
                f"{url} does not support {unsupported}: HTTP {response.status_code} {_error_text(response)}"
            )
        if response.status_code >= 400:
            raise _http_error(url, response)
        return _json_object(url, response.text)


def _sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The `data` payloads of a server-sent event stream (multi-line data joined by newlines)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


def _json_object(url: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BackendError(f"{url}: the answer is not JSON ({text[:200]!r})") from exc
    if not isinstance(value, dict):
        raise BackendError(f"{url}: the answer is not a JSON object ({text[:200]!r})")
    return value


def _logprob_entries(choice: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    logprobs = choice.get("logprobs") or {}
    return list(logprobs.get("content") or [])


def _split_text(content: str, entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Share a chunk's text among its tokens: each gets its own token text while that matches, the last the rest."""
    pieces = []
    for entry in entries:
        token = entry.get("token")
        piece = token if isinstance(token, str) and content.startswith(token) else ""
        pieces.append(piece)
        content = content[len(piece) :]
    pieces[-1] += content
    return pieces


def _token_event(url: str, entry: Mapping[str, Any], text: str, tokenizer: LocalTokenizer | None) -> TokenEvent:
    try:
        top = tuple(
            TopLogprob(token_id=_token_id(alt, tokenizer), token=str(alt["token"]), logprob=float(alt["logprob"]))
            for alt in entry.get("top_logprobs") or []
        )
        return TokenEvent(
            text=text,
            token_id=_token_id(entry, tokenizer),
            token=str(entry["token"]),
            logprob=float(entry["logprob"]),
            top_logprobs=top,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"{url}: malformed logprobs entry {entry!r}") from exc


def _token_id(entry: Mapping[str, Any], tokenizer: LocalTokenizer | None) -> int | None:
    """The token id from llama.cpp's `id` field or vLLM's `token_id:<n>` token strings, else the one the token's
    text names to the model's own tokenizer, if any."""
    value = entry.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    token = entry.get("token")
    if isinstance(token, str) and token.startswith(TOKEN_ID_PREFIX) and token[len(TOKEN_ID_PREFIX) :].isdigit():
        return int(token[len(TOKEN_ID_PREFIX) :])
    return tokenizer.token_id(token) if tokenizer is not None and isinstance(token, str) else None


def _finish_reason(url: str, value: object) -> FinishReason:
    if value == "stop":
        return "stop"
    if value == "length":
        return "length"
    raise BackendError(f"{url}: unsupported finish_reason {value!r}")


def _usage(url: str, value: Any) -> Usage:
    try:
        return Usage(prompt_tokens=int(value["prompt_tokens"]), completion_tokens=int(value["completion_tokens"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"{url}: malformed usage {value!r}") from exc


def _error_text(response: httpx.Response) -> str:
    try:
        return _error_message(response.json())
    except ValueError:
        return response.text[:200]


def _error_message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(error if error is not None else body)[:200]


def _http_error(url: str, response: httpx.Response) -> BackendError:
    return BackendError(f"{url}: HTTP {response.status_code}: {_error_text(response)}", response.status_code)
