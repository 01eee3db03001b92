"""The node's HTTP API: OpenAI-compatible chat completions for developers, and the executor endpoint.

`POST /v1/chat/completions` (streaming and not), `GET /v1/models`, errors shaped as OpenAI's
(`{"error": {"message", "type", "param", "code"}}`), and the OpenAPI spec at `/openapi.json`.
`POST /v1/reports` relays a developer's signed report of a wrong answer (`racenet report` signs one).
`POST /racenet/v1/execute` is node-to-node: a transfer agent forwards a request to its executor;
`GET /racenet/v1/answers/<request id>` too: a weight holder fetches an answer it checks (signed fetch).
Fine-tuning (given a `racenet.finetune.service.FineTuneService`): `POST /v1/files`, `GET /v1/files/<id>`,
`POST|GET /v1/fine_tuning/jobs`, `GET /v1/fine_tuning/jobs/<id>[/events]`, `POST /v1/fine_tuning/jobs/<id>/cancel`
as OpenAI's, chat completions with `ft:` models, and node-to-node `POST /racenet/v1/fine_tuning/run`,
`GET /racenet/v1/fine_tuning/progress/<job>` and `GET /racenet/v1/adapters/<sha256>` (docs/fine-tuning.md).
"""

from __future__ import annotations

import base64
import dataclasses
import email.parser
import email.policy
import itertools
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from racenet import __version__
from racenet.chain.codec import DecodeError, decode
from racenet.chain.modules.verification import MsgReport
from racenet.chain.tx import SignedTx
from racenet.crypto.address import encode_address
from racenet.ml.backend import GenerationEvent, collect
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
    usage_json,
)
from racenet.node.transfer_agent import Opened, TransferAgent

if TYPE_CHECKING:
    from racenet.finetune.service import FineTuneService

MAX_UPLOAD_BYTES = 4 * 1024 * 1024 + 64 * 1024
"""A training file's limit (`racenet.finetune.data.MAX_FILE_BYTES`) plus room for the multipart envelope."""


class Message(BaseModel):
    """One chat message."""

    role: str = Field(description="system, user, assistant, …")
    content: str


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request racenet serves (documentation only)."""

    model: str
    messages: list[Message]
    max_tokens: int | None = Field(None, description="Completion budget; the escrow covers prompt + max_tokens.")
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    logprobs: bool = False
    top_logprobs: int | None = None


def create_app(
    agent: TransferAgent, executor: Executor, limits: Limits = DEFAULT_LIMITS, finetune: FineTuneService | None = None
) -> FastAPI:
    """The FastAPI application of one node; `limits` bound chat completions before any expensive work (M9);
    `finetune` adds the fine-tuning endpoints and `ft:` models."""
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

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/racenet/v1/node")
    def node() -> dict[str, str]:
        """This node's account: name it as a gateway of your API keys (`racenet api-key create --gateway`)."""
        return {"address": encode_address(executor.address)}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        data = [
            {
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": "racenet",
                "price_per_token_nicoin": m.price_per_token,
            }
            for m in agent.models()
        ]
        return {"object": "list", "data": data}

    @app.post(
        "/v1/chat/completions",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
                    }
                },
            }
        },
    )
    async def chat_completions(request: Request) -> Any:
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
            on_chain = generation  # a fine-tuned model's request is opened (and paid) as its base model's
            if finetune is not None and generation.model.startswith("ft:"):
                base = await run_in_threadpool(finetune.check_servable, generation.model)
                on_chain = dataclasses.replace(generation, model=base)
            opened = await run_in_threadpool(agent.open, raw, on_chain, headers)
            logprobs = bool(body.get("logprobs"))
            if stream:
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                events = agent.forward(opened)
                first = await run_in_threadpool(_first_event, events)
                response = SlotStreamingResponse(
                    _sse(opened, generation.model, logprobs, usage, itertools.chain([first], events)),
                    slot,
                    media_type="text/event-stream",
                )
                streaming = True  # from here the response releases the slot when the stream ends
                return response
            completion = await run_in_threadpool(lambda: collect(agent.forward(opened)))
            return completion_json("chatcmpl-" + opened.id_hex, generation.model, completion, logprobs)
        finally:
            if not streaming:
                slot.release()

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
    return app


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


def _sse(
    opened: Opened, model: str, logprobs: bool, include_usage: bool, events: Iterator[GenerationEvent]
) -> Iterator[bytes]:
    """The SSE stream of a chat completion whose first event has arrived (so an executor answered: until then
    errors are plain HTTP errors); an error after the headers went out becomes an error event."""
    request_id, created = "chatcmpl-" + opened.id_hex, int(time.time())
    yield sse(chunk_json(request_id, model, created, {"role": "assistant", "content": ""}))
    try:
        for event in events:
            yield sse(stream_chunks(request_id, model, event, logprobs, created))
            if include_usage and hasattr(event, "usage"):
                yield sse(
                    {**chunk_json(request_id, model, created, {}), "choices": [], "usage": usage_json(event.usage)}
                )
    except ApiError as e:
        yield sse(e.body())
    yield sse("[DONE]")
