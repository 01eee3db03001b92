"""The transfer agent (TA): the node a request enters at. It never executes the request itself.

For each request it authenticates the developer (an API key, or a request signed with the
developer's account key), counts the prompt's tokens, picks the executor with the chain's
routing rule, opens the request on chain (`inference/Start`: escrow from the developer) and waits
until the Start is in a block, so no executor works for a request the chain refused (a replay, or
a Start routed with weights a tally has just changed: that one is routed again once). Then it
forwards the request to the executor and relays the answer. If the executor does not answer, the
TA moves the request to the next executor (`inference/Reassign`) and tries again; when no executor
answers, the caller gets a 503 and the escrow is refunded at expiry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from racenet.chain.errors import Code
from racenet.chain.modules import inference, race
from racenet.chain.modules.inference import (
    ModelInfo,
    MsgReassignRequest,
    MsgStartRequest,
    Params,
    ServerInfo,
    auth_sign_bytes,
    choose_executor,
)
from racenet.chain.query import QuerySpec
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PrivateKey, PublicKey
from racenet.ml.backend import Backend, GenerationEvent, GenerationRequest
from racenet.node.client import ChainClient, ClientError, TxRejected
from racenet.node.executor import event_from_json
from racenet.node.openai_format import ApiError
from racenet.node.request_signing import request_auth
from racenet.node.sender import TxSender

log = logging.getLogger(__name__)

API_KEY_PREFIX = "rk-"
CONNECT_TIMEOUT = 5.0
FIRST_TOKEN_TIMEOUT = 60.0
TOKEN_TIMEOUT = 30.0
CACHE_SECONDS = 5.0
START_TIMEOUT = 30.0
"""How long the TA waits for its Start to be in a block."""
R = TypeVar("R")

REJECTIONS: dict[int, tuple[int, str, str]] = {
    Code.INSUFFICIENT_FUNDS: (402, "insufficient_quota", "insufficient_quota"),
    Code.BAD_SIGNATURE: (401, "authentication_error", "invalid_signature"),
    Code.UNAUTHORIZED: (401, "authentication_error", "invalid_api_key"),
    Code.DUPLICATE_REQUEST: (409, "invalid_request_error", "duplicate_request"),
    Code.NOT_FOUND: (503, "server_error", "no_executor"),
}


def api_key_for(seed: bytes) -> str:
    """The bearer token of an API key (its ed25519 seed)."""
    return API_KEY_PREFIX + seed.hex()


def key_from_api_key(token: str) -> PrivateKey:
    """The session key inside a bearer token; ApiError 401 if it is not one."""
    try:
        seed = bytes.fromhex(token.removeprefix(API_KEY_PREFIX))
        if not token.startswith(API_KEY_PREFIX) or len(seed) != 32:
            raise ValueError
    except ValueError:
        raise ApiError(401, "invalid API key format", "authentication_error", "invalid_api_key") from None
    return PrivateKey(seed)


@dataclass(frozen=True)
class Authorization:
    """Who pays for a request and the signature that lets the chain charge them."""

    request_id: bytes
    developer: bytes
    auth_key: bytes
    signature: bytes


class TransferAgent:
    """Authenticates, routes, opens on chain, forwards and relays requests."""

    def __init__(
        self, client: ChainClient, sender: TxSender, backend: Backend, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.client = client
        self.sender = sender
        self.backend = backend
        timeout = httpx.Timeout(TOKEN_TIMEOUT, connect=CONNECT_TIMEOUT)
        self.http = httpx.Client(timeout=timeout, transport=transport)
        self.cache: dict[str, tuple[float, Any]] = {}

    def _cached(self, spec: QuerySpec[None, R]) -> R:
        """A slowly changing chain answer (models, params), re-read after `CACHE_SECONDS`."""
        now = time.monotonic()
        hit = self.cache.get(spec.path)
        if hit is None or now - hit[0] > CACHE_SECONDS:
            hit = (now, self.client.query(spec))
            self.cache[spec.path] = hit
        value: R = hit[1]
        return value

    def models(self) -> tuple[ModelInfo, ...]:
        """Registered models with their prices (from the chain)."""
        return self._cached(inference.MODELS).models

    def _params(self) -> Params:
        return self._cached(inference.PARAMS)

    def open(self, raw: bytes, body: dict[str, Any], request: GenerationRequest, headers: dict[str, str]) -> Opened:
        """Authenticate and open the request on chain; ApiError on any rejection (no escrow left behind)."""
        self._check_model(request)
        auth = self._authenticate(raw, request, headers)
        prompt_tokens = len(self.backend.tokenize_chat(request.messages, model=request.model))
        for attempt in (1, 2):
            try:
                start_tx, executor, servers = self._start(auth, request, raw, prompt_tokens)
                break
            except TxRejected as e:
                if e.code != Code.WRONG_EXECUTOR or attempt == 2:
                    raise _rejection(e) from e
        endpoints = {s.address: s.endpoint for s in servers}
        return Opened(auth.request_id, start_tx, body, endpoints, executor, self._params().max_attempts)

    def _start(
        self, auth: Authorization, request: GenerationRequest, raw: bytes, prompt_tokens: int
    ) -> tuple[str, bytes, tuple[ServerInfo, ...]]:
        """Route the request and send its Start; (tx hash, executor, servers) once it is in a block."""
        cycle_info = self.client.query(race.CYCLE)
        servers = self.client.query(inference.SERVERS, request.model).servers
        executor = choose_executor(cycle_info.race_seed, auth.request_id, 0, [(s.address, s.weight) for s in servers])
        if executor is None:
            raise ApiError(503, f"no node serves {request.model}", "server_error", "no_executor")
        start = MsgStartRequest(
            request_id=auth.request_id,
            developer=auth.developer,
            model=request.model,
            prompt_tokens=prompt_tokens,
            max_tokens=request.max_tokens,
            prompt_hash=hashlib.sha256(raw).digest(),
            cycle=cycle_info.cycle,
            executor=executor,
            auth_key=auth.auth_key,
            auth_signature=auth.signature,
        )
        try:
            return self.sender.send([start], timeout=START_TIMEOUT).hash, executor, servers
        except TxRejected:
            raise  # the chain's answer, mapped by the caller; other ClientErrors mean it did not answer
        except ClientError as e:
            raise ApiError(503, f"the request was not opened on chain: {e}", "server_error") from e

    def _check_model(self, request: GenerationRequest) -> None:
        if request.model not in {m.id for m in self.models()}:
            raise ApiError(404, f"the model {request.model!r} does not exist", code="model_not_found", param="model")
        limit = self._params().max_tokens
        if request.max_tokens > limit:
            raise ApiError(400, f"max_tokens {request.max_tokens} is over the limit {limit}", param="max_tokens")

    def _authenticate(self, raw: bytes, request: GenerationRequest, headers: dict[str, str]) -> Authorization:
        """The request's authorization, from an API key or a signed request."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        chain_id = self.sender.chain_id or self.client.chain_id()
        if scheme.lower() == "bearer":
            session = key_from_api_key(token.strip())
            key = self.client.query(inference.APIKEY, session.public_key.raw)
            if key is None:
                raise ApiError(401, "unknown or revoked API key", "authentication_error", "invalid_api_key")
            request_id = os.urandom(32)
            auth = request_auth(chain_id, request_id, key.developer, request.model, request.max_tokens, raw)
            return Authorization(request_id, key.developer, session.public_key.raw, session.sign(auth_sign_bytes(auth)))
        return self._signed(raw, request, headers, chain_id)

    def _signed(self, raw: bytes, request: GenerationRequest, headers: dict[str, str], chain_id: str) -> Authorization:
        """A request signed with the developer's key: X-Racenet-{Request-Id,Public-Key,Signature} headers."""
        try:
            request_id = bytes.fromhex(headers["x-racenet-request-id"])
            pub = bytes.fromhex(headers["x-racenet-public-key"])
            signature = bytes.fromhex(headers["x-racenet-signature"])
            developer = PublicKey(pub).address
        except (KeyError, ValueError):
            raise ApiError(
                401,
                "send an API key (Authorization: Bearer rk-…) or a signed request "
                "(X-Racenet-Request-Id, X-Racenet-Public-Key, X-Racenet-Signature)",
                "authentication_error",
                "missing_credentials",
            ) from None
        auth = request_auth(chain_id, request_id, developer, request.model, request.max_tokens, raw)
        if len(request_id) != 32 or not PublicKey(pub).verify(auth_sign_bytes(auth), signature):
            raise ApiError(401, "the request signature does not verify", "authentication_error", "invalid_signature")
        return Authorization(request_id, developer, pub, signature)

    def forward(self, opened: Opened) -> Iterator[GenerationEvent]:
        """The executor's event stream; re-routes to the next executor while none has answered yet."""
        executor = opened.executor
        for attempt in range(opened.max_attempts):
            try:
                yield from self._stream(opened, executor)
                return
            except _NoAnswer as e:
                log.warning("executor %s did not answer request %s: %s", encode_address(executor), opened.id_hex, e)
            if attempt + 1 < opened.max_attempts:
                executor = self._reassign(opened)
        raise ApiError(
            503, "no executor answered; the escrow is refunded when the request expires", "server_error", "no_executor"
        )

    def _stream(self, opened: Opened, executor: bytes) -> Iterator[GenerationEvent]:
        endpoint = opened.endpoints.get(executor, "")
        payload = json.dumps({"request_id": opened.id_hex, "start_tx": opened.start_tx, "body": opened.body}).encode()
        headers = {
            "content-type": "application/json",
            "x-racenet-public-key": self.sender.key.public_key.raw.hex(),
            "x-racenet-signature": self.sender.key.sign(hashlib.sha256(payload).digest()).hex(),
        }
        started = False
        try:
            with self.http.stream(
                "POST",
                endpoint.rstrip("/") + "/racenet/v1/execute",
                content=payload,
                headers=headers,
                timeout=httpx.Timeout(FIRST_TOKEN_TIMEOUT, connect=CONNECT_TIMEOUT),
            ) as response:
                if response.status_code != 200:
                    raise _NoAnswer(f"HTTP {response.status_code}: {response.read()[:200]!r}")
                for line in response.iter_lines():
                    if line:
                        started = True
                        yield event_from_json(json.loads(line))
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:
            if started:
                raise ApiError(502, f"the executor failed mid-answer: {e}", "server_error", "executor_failed") from e
            raise _NoAnswer(str(e)) from e

    def _reassign(self, opened: Opened) -> bytes:
        """Move the request to the next executor on chain and return it."""
        try:
            self.sender.send([MsgReassignRequest(opened.request_id)])
            record = self.client.query(inference.REQUEST, opened.request_id)
            servers = self.client.query(inference.SERVERS, str(opened.body["model"])).servers
        except ClientError as e:
            raise ApiError(503, f"could not re-route the request: {e}", "server_error", "no_executor") from e
        if record is None or record.request is None:
            raise ApiError(503, "the request is no longer open on chain", "server_error", "no_executor")
        opened.endpoints = {s.address: s.endpoint for s in servers}
        return record.request.executor


def _rejection(e: TxRejected) -> ApiError:
    """The OpenAI-shaped error for a Start the chain refused."""
    status, type_, code = REJECTIONS.get(e.code, (400, "invalid_request_error", e.name))
    return ApiError(status, e.log, type_, code)


class _NoAnswer(Exception):
    """The executor could not be reached or refused before sending anything."""


@dataclass
class Opened:
    """A request opened on chain, ready to forward: its Start tx, body, executors' endpoints and attempts."""

    request_id: bytes
    start_tx: str
    body: dict[str, Any]
    endpoints: dict[bytes, str]
    executor: bytes
    max_attempts: int

    @property
    def id_hex(self) -> str:
        """The request id in hex (the chat completion id is `chatcmpl-<id_hex>`)."""
        return self.request_id.hex()
