"""The node's HTTP API: OpenAI-compatible chat completions for developers, and the executor endpoint.

`POST /v1/chat/completions` and legacy `POST /v1/completions` (streaming and not; `usage` carries the cost the
chain charged, in nicoin), `GET /v1/models` (prices, context length), `GET /v1/key` and `GET /v1/key/requests`
(an API key's balance, limit, spend and request history, authenticated with the key itself), errors shaped as
OpenAI's (`{"error": {"message", "type", "param", "code"}}`, `Retry-After` on 429 and 503), an `x-request-id`
header on every response, and the OpenAPI spec at `/openapi.json`.
`POST /v1/reports` relays a developer's signed report of a wrong answer (`racenet report` signs one).
`POST /racenet/v1/execute` is node-to-node: a transfer agent forwards a request to its executor;
`GET /racenet/v1/answers/<request id>` too: a weight holder fetches an answer it checks (signed fetch).
Fine-tuning (given a `racenet.finetune.service.FineTuneService`): `POST /v1/files`, `GET /v1/files/<id>`,
`POST|GET /v1/fine_tuning/jobs`, `GET /v1/fine_tuning/jobs/<id>[/events]`, `POST /v1/fine_tuning/jobs/<id>/cancel`
as OpenAI's, chat completions with `ft:` models, and node-to-node `POST /racenet/v1/fine_tuning/run`,
`GET /racenet/v1/fine_tuning/progress/<job>` and `GET /racenet/v1/adapters/<sha256>` (docs/fine-tuning.md).
The explorer (docs/explorer.md): HTML pages under `/explorer` (`/` redirects there) and `GET /explorer/api/live`.
"""

from __future__ import annotations

import base64
import dataclasses
import email.parser
import email.policy
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from racenet import __version__
from racenet.chain.codec import DecodeError, decode
from racenet.chain.modules.inference import ModelInfo
from racenet.chain.modules.verification import MsgReport
from racenet.chain.tx import SignedTx
from racenet.crypto.address import encode_address
from racenet.explorer import explorer_router
from racenet.ml.backend import FinishEvent, GenerationEvent, collect
from racenet.node import key_info
from racenet.node.client import ChainClient, ClientError
from racenet.node.executor import Executor
from racenet.node.limits import (
    DEFAULT_LIMITS,
    ConcurrencyLimiter,
    Limits,
    RateLimiter,
    SlotStreamingResponse,
    client_ip,
    credential_key,
    read_limited_body,
)
from racenet.node.openai_format import (
    ApiError,
    chunk_json,
    completion_json,
    parse_request,
    sse,
    stream_chunks,
    text_chunk_json,
    text_completion_json,
    usage_json,
)
from racenet.node.transfer_agent import Opened, TransferAgent

if TYPE_CHECKING:
    from racenet.finetune.service import FineTuneService

MAX_UPLOAD_BYTES = 4 * 1024 * 1024 + 64 * 1024
"""A training file's limit (`racenet.finetune.data.MAX_FILE_BYTES`) plus room for the multipart envelope."""
REQUEST_ID_HEADER = "x-request-id"
"""Every response carries one: the on-chain request id (hex) of a completion, else a fresh `req_…`."""
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class ChatMessage(BaseModel):
    """One chat message."""

    role: str = Field(description="system, user, assistant, …")
    content: str


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request racenet serves (documentation only)."""

    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = Field(None, description="Completion budget; the escrow covers prompt + max_tokens.")
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    logprobs: bool = False
    top_logprobs: int | None = None


class CompletionRequest(BaseModel):
    """The subset of OpenAI's legacy completion request racenet serves (documentation only)."""

    model: str
    prompt: str | list[str] = Field(description="One prompt, read as one user message of the chat model.")
    max_tokens: int | None = Field(None, description="Completion budget; the escrow covers prompt + max_tokens.")
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    logprobs: int | None = Field(None, description="Alternatives listed per token (top_logprobs).")


def _request_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that reads its body itself."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _model_json(model: ModelInfo, context_length: int, max_completion_tokens: int) -> dict[str, Any]:
    """One entry of `GET /v1/models`: OpenAI's fields, the price per token and the limits a request has."""
    price = str(model.price_per_token)
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": "racenet",
        "price_per_token_nicoin": model.price_per_token,
        "pricing": {"prompt": price, "completion": price, "unit": "nicoin"},
        "context_length": context_length,
        "max_completion_tokens": max_completion_tokens,
    }


def create_app(
    agent: TransferAgent,
    executor: Executor,
    limits: Limits = DEFAULT_LIMITS,
    finetune: FineTuneService | None = None,
    training_dir: Path | None = None,
) -> FastAPI:
    """The FastAPI application of one node; `limits` bound chat completions before any expensive work (M9);
    `finetune` adds the fine-tuning endpoints and `ft:` models; `training_dir` (the daemon's) gives the explorer
    this node's loss curves."""
    app = FastAPI(title="racenet node API", version=__version__, description=__doc__)
    per_ip = RateLimiter(limits.ip_burst, limits.ip_rate, limits.max_tracked_keys)
    per_key = RateLimiter(limits.key_burst, limits.key_rate, limits.max_tracked_keys)
    in_flight = ConcurrencyLimiter(limits.max_in_flight_per_key)

    @app.exception_handler(ApiError)
    def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(ClientError)
    def chain_error(request: Request, error: ClientError) -> JSONResponse:
        return api_error(request, ApiError(503, f"the chain is unreachable: {error}", "server_error"))

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code)
        return api_error(
            request, ApiError(error.status_code, str(error.detail), code=code, headers=dict(error.headers or {}))
        )

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return api_error(request, ApiError(400, f"invalid request: {problems}"))

    @app.exception_handler(Exception)
    def internal_error(request: Request, error: Exception) -> JSONResponse:
        # the server still logs the traceback (Starlette re-raises); the client sees no internals
        headers = {REQUEST_ID_HEADER: fresh_request_id()}  # sent outside the middleware that stamps the others
        return api_error(request, ApiError(500, "internal error", "server_error", "internal_error", headers=headers))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/racenet/v1/node")
    def node() -> dict[str, str]:
        """This node's account: name it as a gateway of your API keys (`racenet api-key create --gateway`)."""
        return {"address": encode_address(executor.address)}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        """The chain's models with their price (nicoin per token, prompt and completion alike) and limits."""
        limits = agent.context_limits()
        return {"object": "list", "data": [_model_json(m, *limits) for m in agent.models()]}

    @app.get("/v1/models/{model_id:path}")
    def model(model_id: str) -> dict[str, Any]:
        """One model as `GET /v1/models` lists it; 404 `model_not_found` if the chain has no such model."""
        for m in agent.models():
            if m.id == model_id:
                return _model_json(m, *agent.context_limits())
        raise ApiError(404, f"the model {model_id!r} does not exist", code="model_not_found", param="model")

    async def complete(request: Request, text: bool) -> Response:
        """A chat (`text=False`) or legacy text completion: limits, open on chain, forward, relay with the cost."""
        # M9: the client IP's bucket, then the claimed credential's (headers only), then its in-flight slot,
        # all before the body is read; the transfer agent authenticates and queries the chain after these.
        ip = client_ip(request)
        per_ip.take(ip)
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = credential_key(headers) or "anonymous:" + ip
        per_key.take(key)
        slot = in_flight.acquire(key)
        streaming = False
        try:
            raw = await read_limited_body(request, limits.max_body_bytes)
            body, generation, stream = parse_request(raw)
            _require_kind(body, text)
            on_chain = generation  # a fine-tuned model's request is opened (and paid) as its base model's
            if finetune is not None and generation.model.startswith("ft:"):
                base = await run_in_threadpool(finetune.check_servable, generation.model)
                on_chain = dataclasses.replace(generation, model=base)
            opened = await run_in_threadpool(agent.open, raw, on_chain, headers)
            reply = Reply(opened, generation.model, bool(body.get("logprobs")), text)
            id_header = {REQUEST_ID_HEADER: opened.id_hex}
            try:
                if stream:
                    usage_chunk = bool((body.get("stream_options") or {}).get("include_usage"))
                    events = agent.forward(opened)
                    first = await run_in_threadpool(_first_event, events)
                    chunks = _sse(agent, reply, usage_chunk, itertools.chain([first], events))
                    response = SlotStreamingResponse(chunks, slot, media_type="text/event-stream", headers=id_header)
                    streaming = True  # from here the response releases the slot when the stream ends
                    return response
                completion = await run_in_threadpool(lambda: collect(agent.forward(opened)))
                charge = await run_in_threadpool(agent.charge, opened, completion.usage)
            except ApiError as e:
                e.headers.update(id_header)  # an opened request's refund at expiry is found by its id
                raise
            render = text_completion_json if text else completion_json
            document = render(reply.response_id, reply.model, completion, reply.logprobs, usage_json(charge))
            return JSONResponse(document, headers=id_header)
        finally:
            if not streaming:
                slot.release()

    @app.post("/v1/chat/completions", openapi_extra=_request_schema(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Response:
        return await complete(request, text=False)

    @app.post(
        "/v1/completions",
        summary="Legacy text completion (the prompt is read as one user message)",
        openapi_extra=_request_schema(CompletionRequest),
    )
    async def completions(request: Request) -> Response:
        return await complete(request, text=True)

    @app.get("/v1/key", summary="The API key's account balance, limit and spend")
    async def key_status(request: Request) -> JSONResponse:
        token = _bearer(request, per_ip, per_key)
        return JSONResponse(await run_in_threadpool(key_info.status, agent.client, token))

    @app.get("/v1/key/requests", summary="The requests charged to the API key, newest first")
    async def key_requests(request: Request, limit: int = 100) -> JSONResponse:
        token = _bearer(request, per_ip, per_key)
        return JSONResponse(await run_in_threadpool(key_info.history, agent.client, token, limit))

    @app.post("/v1/reports", summary="Report a wrong answer (a signed verification/Report transaction)")
    async def reports(request: Request) -> JSONResponse:
        per_ip.take(client_ip(request))
        raw = await read_limited_body(request, limits.max_body_bytes)
        return JSONResponse(await run_in_threadpool(relay_report, agent.client, raw))

    @app.post("/racenet/v1/execute", include_in_schema=False)
    async def execute(request: Request) -> StreamingResponse:
        per_ip.take(client_ip(request))  # M9/H3: the executor's checks are cheap, and bounded per peer too
        raw = await read_limited_body(request, limits.max_body_bytes)
        headers = {k.lower(): v for k, v in request.headers.items()}
        job = await run_in_threadpool(executor.authorize, raw, headers)
        return StreamingResponse(executor.execute(job), media_type="application/x-ndjson")

    @app.get("/racenet/v1/answers/{request_id}", include_in_schema=False)
    async def answer(request_id: str, request: Request) -> JSONResponse:
        per_ip.take(client_ip(request))
        headers = {k.lower(): v for k, v in request.headers.items()}
        return JSONResponse(await run_in_threadpool(executor.answer_for, request_id, headers))

    if finetune is not None:
        _fine_tuning_routes(app, finetune, per_ip)
    app.include_router(explorer_router(agent.client, training_dir), dependencies=[Depends(_limit_ip(per_ip))])
    app.add_middleware(RequestIdMiddleware)
    return app


def _limit_ip(per_ip: RateLimiter) -> Any:
    """A route dependency spending one request of the client IP's bucket (429 with Retry-After when empty)."""

    def limit(request: Request) -> None:
        per_ip.take(client_ip(request))

    return limit


def _fine_tuning_routes(app: FastAPI, service: FineTuneService, per_ip: RateLimiter) -> None:
    """OpenAI's files and fine-tuning job endpoints, and the node-to-node ones (docs/fine-tuning.md)."""

    async def developer(request: Request) -> Any:
        per_ip.take(client_ip(request))
        headers = {k.lower(): v for k, v in request.headers.items()}
        return await run_in_threadpool(service.developer, headers)

    @app.post("/v1/files", summary="Upload a chat JSONL training file (multipart, purpose=fine-tune)")
    async def upload(request: Request) -> JSONResponse:
        who = await developer(request)
        raw = await read_limited_body(request, MAX_UPLOAD_BYTES)
        fields = parse_multipart(request.headers.get("content-type", ""), raw)
        if "file" not in fields:
            raise ApiError(400, "send the file as multipart/form-data field 'file'", param="file")
        purpose = fields.get("purpose", (b"", ""))[0].decode(errors="replace")
        content, filename = fields["file"]
        return JSONResponse(await run_in_threadpool(service.upload, who, content, filename, purpose))

    @app.get("/v1/files/{file_id}")
    async def file(file_id: str, request: Request) -> JSONResponse:
        who = await developer(request)
        return JSONResponse(await run_in_threadpool(service.file, who, file_id))

    @app.post("/v1/fine_tuning/jobs", summary="Create a fine-tuning job (LoRA on the base model, paid per token)")
    async def create_job(request: Request) -> JSONResponse:
        who = await developer(request)
        raw = await read_limited_body(request, 64 * 1024)
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
        except ValueError as e:
            raise ApiError(400, f"the body is not a JSON object: {e}") from None
        return JSONResponse(await run_in_threadpool(service.create_job, who, body))

    @app.get("/v1/fine_tuning/jobs")
    async def list_jobs(request: Request) -> JSONResponse:
        who = await developer(request)
        jobs = await run_in_threadpool(service.jobs, who)
        return JSONResponse({"object": "list", "data": jobs, "has_more": False})

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    async def get_job(job_id: str, request: Request) -> JSONResponse:
        who = await developer(request)
        return JSONResponse(await run_in_threadpool(service.job, who, job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request) -> JSONResponse:
        who = await developer(request)
        events = await run_in_threadpool(service.events, who, job_id)
        return JSONResponse({"object": "list", "data": events, "has_more": False})

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str, request: Request) -> JSONResponse:
        who = await developer(request)
        return JSONResponse(await run_in_threadpool(service.cancel, who, job_id))

    @app.post("/racenet/v1/fine_tuning/run", include_in_schema=False)
    async def run(request: Request) -> JSONResponse:
        per_ip.take(client_ip(request))
        raw = await read_limited_body(request, 2 * MAX_UPLOAD_BYTES)
        headers = {k.lower(): v for k, v in request.headers.items()}
        return JSONResponse(await run_in_threadpool(service.accept, raw, headers))

    @app.get("/racenet/v1/fine_tuning/progress/{job_hex}", include_in_schema=False)
    async def progress(job_hex: str, request: Request) -> JSONResponse:
        per_ip.take(client_ip(request))
        return JSONResponse(await run_in_threadpool(service.progress, job_hex))

    @app.get("/racenet/v1/adapters/{digest}", include_in_schema=False)
    async def adapter(digest: str, request: Request) -> FileResponse:
        per_ip.take(client_ip(request))
        return FileResponse(service.adapter_file(digest), media_type="application/octet-stream")


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[bytes, str]]:
    """The fields of a multipart/form-data body: name → (content, filename); ApiError 400 if it is not one."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(400, "upload the file as multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise ApiError(400, "the multipart body does not parse")
    fields: dict[str, tuple[bytes, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (payload, part.get_filename() or "")
    return fields


def relay_report(client: ChainClient, raw: bytes) -> dict[str, Any]:
    """Broadcast a developer's signed transaction that carries exactly one `verification/Report`.

    The developer signs it (the chain takes the report fee from its account; `racenet report` builds the same
    transaction); this node only relays it, so it refuses anything else rather than relay arbitrary transactions.
    """
    try:
        tx = base64.b64decode(json.loads(raw)["tx"], validate=True)
        envelope = decode(SignedTx, tx)
    except (ValueError, KeyError, TypeError, DecodeError) as e:
        raise ApiError(400, f'the body must be {{"tx": base64 of a signed transaction}}: {e}') from e
    if [m.type for m in envelope.body.msgs] != [MsgReport.TYPE]:
        raise ApiError(400, "the transaction must carry exactly one verification/Report message")
    try:
        outcome = client.wait_for_tx(client.broadcast(tx))
    except ClientError as e:
        raise ApiError(400, f"the report was refused: {e}", code="report_refused") from e
    if outcome.code:
        raise ApiError(400, f"the report was refused: {outcome.log}", code="report_refused")
    return {"hash": outcome.hash, "height": outcome.height}


def _first_event(events: Iterator[GenerationEvent]) -> GenerationEvent:
    """The stream's first event; a 502 if the executor's stream ended before it sent one."""
    for event in events:
        return event
    raise ApiError(502, "the executor sent an empty answer", "server_error", "executor_failed")


@dataclass(frozen=True)
class Reply:
    """How to render one opened request's answer: as a chat or a text completion, with or without logprobs."""

    opened: Opened
    model: str
    logprobs: bool
    text: bool

    @property
    def response_id(self) -> str:
        """`chatcmpl-<request id>` or `cmpl-<request id>` (the on-chain id in hex)."""
        return ("cmpl-" if self.text else "chatcmpl-") + self.opened.id_hex


def _require_kind(body: dict[str, Any], text: bool) -> None:
    """A text completion needs `prompt` and a chat completion `messages` (ApiError 400 otherwise)."""
    if text and "prompt" not in body:
        raise ApiError(400, "'prompt' is required (use /v1/chat/completions for messages)", param="prompt")
    if not text and "messages" not in body:
        raise ApiError(400, "'messages' is required (use /v1/completions for a prompt)", param="messages")
    if text and (body.get("echo") or body.get("suffix") or (body.get("n") or 1) != 1):
        raise ApiError(400, "echo, suffix and n > 1 are not supported")


def _bearer(request: Request, per_ip: RateLimiter, per_key: RateLimiter) -> str:
    """The API key a request authenticates with, after its IP's and key's rate limits; 401 without one."""
    per_ip.take(client_ip(request))
    headers = {k.lower(): v for k, v in request.headers.items()}
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "send your API key: Authorization: Bearer rk-…", "authentication_error", "missing_api_key")
    per_key.take(credential_key(headers) or "")
    return token.strip()


def _sse(agent: TransferAgent, reply: Reply, usage_chunk: bool, events: Iterator[GenerationEvent]) -> Iterator[bytes]:
    """The SSE stream of a completion whose first event has arrived (so an executor answered: until then errors
    are plain HTTP errors); an error after the headers went out becomes an error event.

    The last chunk carries `usage` with the cost: OpenAI's own usage chunk (no choices) when the request asked for
    it (`stream_options.include_usage`), else the chunk with the finish reason."""
    request_id, created, model = reply.response_id, int(time.time()), reply.model
    if not reply.text:
        yield sse(chunk_json(request_id, model, created, {"role": "assistant", "content": ""}))
    try:
        for event in events:
            if reply.text:
                chunk = text_chunk_json(request_id, model, created, event, reply.logprobs)
            else:
                chunk = stream_chunks(request_id, model, event, reply.logprobs, created)
            if isinstance(event, FinishEvent):
                usage = usage_json(agent.charge(reply.opened, event.usage))
                if usage_chunk:
                    yield sse(chunk)
                    chunk = {**chunk, "choices": [], "usage": usage}
                else:
                    chunk["usage"] = usage
            yield sse(chunk)
    except ApiError as e:
        yield sse(e.body())
    yield sse("[DONE]")


def fresh_request_id() -> str:
    """The `x-request-id` of a response that opened no request: `req_` and 32 random hex digits."""
    return "req_" + os.urandom(16).hex()


class RequestIdMiddleware:
    """Adds `x-request-id` to every response that has none (a completion's is its on-chain request id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; stamp the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers[REQUEST_ID_HEADER] = fresh_request_id()
            await send(message)

        await self.app(scope, receive, stamped)
