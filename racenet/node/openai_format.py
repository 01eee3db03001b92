"""OpenAI Chat Completions shapes: parsing a request, and rendering answers, stream chunks and errors."""

from __future__ import annotations

import json
import time
from typing import Any

from racenet.ml.backend import (
    DEFAULT_MAX_TOKENS,
    ChatMessage,
    Completion,
    FinishEvent,
    GenerationRequest,
    TokenEvent,
    Usage,
)
from racenet.ml.errors import InvalidRequestError


class ApiError(Exception):
    """An error answered with an OpenAI-shaped body: HTTP status, type, code and message, and any extra
    response headers (`Retry-After` on a 429)."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """`{"error": {...}}` as the OpenAI API returns it."""
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def parse_request(raw: bytes) -> tuple[dict[str, Any], GenerationRequest, bool]:
    """(JSON body, generation request, stream?) from a request body; ApiError 400 when malformed."""
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "'messages' must be a list of {role, content} objects", param="messages")
    stop = body.get("stop") or ()
    top = body.get("top_logprobs") or 0
    try:
        request = GenerationRequest(
            model=model,
            messages=[ChatMessage(role=m.get("role"), content=_text(m.get("content"))) for m in messages],
            max_tokens=_max_tokens(body),
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            seed=body.get("seed"),
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            top_logprobs=int(top) if body.get("logprobs") else 0,
        )
    except (InvalidRequestError, TypeError, ValueError) as e:
        raise ApiError(400, str(e)) from e
    return body, request, bool(body.get("stream"))


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_completion_tokens", body.get("max_tokens", DEFAULT_MAX_TOKENS))
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "max_tokens must be an integer", param="max_tokens")
    return value


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise ApiError(400, "message content must be a string or a list of text parts", param="messages")


def _logprob_entry(event: TokenEvent) -> dict[str, Any]:
    return {
        "token": event.token,
        "logprob": event.logprob,
        "bytes": list(event.token.encode()),
        "top_logprobs": [
            {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())} for t in event.top_logprobs
        ],
    }


def usage_json(usage: Usage) -> dict[str, int]:
    """OpenAI `usage`."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_json(request_id: str, model: str, completion: Completion, logprobs: bool) -> dict[str, Any]:
    """A non-streaming `chat.completion` object."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "logprobs": {"content": [_logprob_entry(t) for t in completion.tokens]} if logprobs else None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage_json(completion.usage),
    }


def chunk_json(
    request_id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish: str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`."""
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None if logprobs is None else {"content": logprobs},
                "finish_reason": finish,
            }
        ],
    }


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event line pair."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def stream_chunks(
    request_id: str, model: str, event: TokenEvent | FinishEvent, logprobs: bool, created: int
) -> dict[str, Any]:
    """The chunk for one generation event."""
    if isinstance(event, FinishEvent):
        return chunk_json(
            request_id, model, created, {"content": event.text} if event.text else {}, event.finish_reason
        )
    return chunk_json(
        request_id, model, created, {"content": event.text}, logprobs=[_logprob_entry(event)] if logprobs else None
    )
