"""The transfer agent (TA): the node a request enters at. It never executes the request itself.

For each request it authenticates who pays, cheaply and before any tokenizing: an API key (a
bearer secret whose id is on chain, naming this node among its gateways) or a request the
developer signed with its account key over the body, the prompt's token count, `max_tokens`,
the model, an expiry height and the chain. It checks the payer can cover the request, counts the
prompt's tokens (a signed count must match), opens the request on chain (`inference/Start`:
escrow from the developer, executor drawn by the chain, never this node) and waits until the
chain has routed it (from a beacon round signed after the Start was included), so no executor
works for a request the chain refused. Then it forwards the
exact body the developer sent, signed for that executor, that request and this chain, and relays
the answer. If the executor does not answer, the TA moves the request to the next executor
(`inference/Reassign`, allowed a few blocks after routing) and tries again; when no executor
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
from racenet.chain.modules import bank, inference
from racenet.chain.modules.inference import (
    ModelInfo,
    MsgReassignRequest,
    MsgStartRequest,
    Params,
    Receipt,
    ReceiptStatus,
    api_key_id,
    auth_sign_bytes,
)
from racenet.chain.query import QuerySpec
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PublicKey
from racenet.ml.backend import Backend, GenerationEvent, GenerationRequest, Usage
from racenet.node.client import ChainClient, ClientError, TxRejected
from racenet.node.executor import event_from_json, forward_headers
from racenet.node.openai_format import ApiError, Charge
from racenet.node.request_signing import SIGNED_HEADERS, request_auth
from racenet.node.sender import TxSender

log = logging.getLogger(__name__)

API_KEY_PREFIX = "rk-"
CONNECT_TIMEOUT = 5.0
FIRST_TOKEN_TIMEOUT = 60.0
TOKEN_TIMEOUT = 30.0
CACHE_SECONDS = 5.0
START_TIMEOUT = 30.0
"""How long the TA waits for its Start (or a Reassign) to be in a block."""
SETTLE_TIMEOUT = 10.0
"""How long the TA waits for the executor's Finish to be in a block before it reports an unsettled cost."""
POLL_SECONDS = 0.2
"""How often the TA re-reads the chain while it waits for routing or for a Reassign to be allowed."""
R = TypeVar("R")

REJECTIONS: dict[int, tuple[int, str, str]] = {
    Code.INSUFFICIENT_FUNDS: (402, "insufficient_quota", "insufficient_quota"),
    Code.BAD_SIGNATURE: (401, "authentication_error", "invalid_signature"),
    Code.UNAUTHORIZED: (401, "authentication_error", "invalid_api_key"),
    Code.DUPLICATE_REQUEST: (409, "invalid_request_error", "duplicate_request"),
    Code.NOT_FOUND: (503, "server_error", "no_executor"),
}


def new_api_key() -> tuple[str, bytes]:
    """A fresh API key: the bearer token to hand the client, and the id the chain stores."""
    secret = os.urandom(32)
    return API_KEY_PREFIX + secret.hex(), api_key_id(secret)


def api_key_id_of(token: str) -> bytes:
    """The on-chain id of a bearer token; ApiError 401 if it is not an API key."""
    try:
        secret = bytes.fromhex(token.removeprefix(API_KEY_PREFIX))
        if not token.startswith(API_KEY_PREFIX) or len(secret) != 32:
            raise ValueError
    except ValueError:
        raise ApiError(401, "invalid API key format", "authentication_error", "invalid_api_key") from None
    return api_key_id(secret)


@dataclass(frozen=True)
class Payer:
    """Who pays for a request: the developer, and its API key id or its signed authorization."""

    developer: bytes
    api_key_id: bytes = b""
    request_id: bytes = b""
    prompt_tokens: int = 0
    expiry_height: int = 0
    max_price_per_token: int = 0
    signer_key: bytes = b""
    signature: bytes = b""
    budget: int = 0


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

    def context_limits(self) -> tuple[int, int]:
        """(context length, most completion tokens) a request may have: the chain's limits, and the context
        window of this node's model where its backend tells it."""
        params = self._params()
        context = params.max_prompt_tokens + params.max_tokens
        window = getattr(self.backend, "context_length", None)
        if isinstance(window, int) and window > 0:
            context = min(context, window)
        return context, min(params.max_tokens, context)

    def _params(self) -> Params:
        return self._cached(inference.PARAMS)

    def open(self, raw: bytes, request: GenerationRequest, headers: dict[str, str]) -> Opened:
        """Authenticate, check funds, count tokens and open the request on chain; ApiError on any rejection."""
        self._check_model(request)
        payer = self._authenticate(raw, request, headers)
        price = next(m.price_per_token for m in self.models() if m.id == request.model)
        if payer.budget < request.max_tokens * price:
            message = "the account cannot cover max_tokens at this model's price"
            raise ApiError(402, message, "insufficient_quota", "insufficient_quota")
        if payer.signature and price > payer.max_price_per_token:
            raise ApiError(
                400,
                f"{request.model} costs {price} nicoin per token, above the {payer.max_price_per_token} the request "
                "is signed for (see `racenet price show`)",
                code="price_above_signed",
            )
        try:
            prompt_tokens = len(self.backend.tokenize_chat(request.messages, model=request.model))
        except ValueError as e:
            raise ApiError(503, f"this node cannot count tokens for {request.model}: {e}", "server_error") from e
        if payer.signature and prompt_tokens != payer.prompt_tokens:
            raise ApiError(
                400,
                f"the request is signed for {payer.prompt_tokens} prompt tokens; {request.model} reads {prompt_tokens}",
                code="prompt_tokens_mismatch",
            )
        request_id = self._start(payer, request, raw, prompt_tokens)
        return self._opened(request_id, raw, request.model)

    def _start(self, payer: Payer, request: GenerationRequest, raw: bytes, prompt_tokens: int) -> bytes:
        """Send the Start and wait for its block; the request id (the chain numbers API-key requests)."""
        start = MsgStartRequest(
            request_id=payer.request_id,
            developer=payer.developer,
            model=request.model,
            prompt_tokens=prompt_tokens,
            max_tokens=request.max_tokens,
            prompt_hash=hashlib.sha256(raw).digest(),
            expiry_height=payer.expiry_height,
            max_price_per_token=payer.max_price_per_token,
            signer_key=payer.signer_key,
            signature=payer.signature,
            api_key_id=payer.api_key_id,
        )
        try:
            outcome = self.sender.send([start], timeout=START_TIMEOUT)
        except TxRejected as e:
            raise _rejection(e) from e
        except ClientError as e:
            raise ApiError(503, f"the request was not opened on chain: {e}", "server_error") from e
        return outcome.data

    def _opened(self, request_id: bytes, raw: bytes, model: str) -> Opened:
        """The open request once the chain routed it (its beacon round is recorded, normally one block
        after the Start): its executor and the endpoints of the model's servers."""
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                record = self.client.query(inference.REQUEST, request_id)
                if record is None or record.request is None:
                    raise ApiError(503, "the request is not open on chain", "server_error", "no_executor")
                if record.request.executor or time.monotonic() > deadline:
                    break
                time.sleep(POLL_SECONDS)
            servers = self.client.query(inference.SERVERS, model).servers
        except ClientError as e:
            raise ApiError(503, f"could not read the opened request: {e}", "server_error") from e
        if not record.request.executor:
            raise ApiError(503, "the chain has not routed the request (no beacon round)", "server_error", "no_executor")
        endpoints = {s.address: s.endpoint for s in servers}
        request = record.request
        return Opened(
            request_id, raw, model, endpoints, request.executor, self._params().max_attempts, request.price_per_token
        )

    def charge(self, opened: Opened, usage: Usage) -> Charge:
        """What the chain charged for an answered request: its receipt, once the executor's Finish is in a block
        (waited for up to `SETTLE_TIMEOUT`); past that, what the Finish charges for `usage` at the escrowed price."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            receipt = self._receipt(opened.request_id)
            if receipt is not None:
                return Charge(receipt.prompt_tokens, receipt.completion_tokens, int(receipt.cost), True)
            if time.monotonic() > deadline:
                cost = usage.total_tokens * opened.price_per_token
                return Charge(usage.prompt_tokens, usage.completion_tokens, cost, False)
            time.sleep(POLL_SECONDS)

    def _receipt(self, request_id: bytes) -> Receipt | None:
        """The request's receipt if an executor finished it (a chain that cannot be read: None)."""
        try:
            record = self.client.query(inference.REQUEST, request_id)
        except ClientError:
            return None
        receipt = None if record is None else record.receipt
        return receipt if receipt is not None and receipt.status != ReceiptStatus.EXPIRED else None

    def _check_model(self, request: GenerationRequest) -> None:
        if request.model not in {m.id for m in self.models()}:
            raise ApiError(404, f"the model {request.model!r} does not exist", code="model_not_found", param="model")
        limit = self._params().max_tokens
        if request.max_tokens > limit:
            raise ApiError(400, f"max_tokens {request.max_tokens} is over the limit {limit}", param="max_tokens")

    def _authenticate(self, raw: bytes, request: GenerationRequest, headers: dict[str, str]) -> Payer:
        """Who pays, from an API key or a signed request, with what they can spend (no tokenizing yet)."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return self._api_key(token.strip())
        return self._signed(raw, request, headers)

    def _api_key(self, token: str) -> Payer:
        """An API key whose gateways include this node; its budget is what both key and account allow."""
        key_id = api_key_id_of(token)
        key = self.client.query(inference.APIKEY, key_id)
        if key is None or key.revoked:
            raise ApiError(401, "unknown or revoked API key", "authentication_error", "invalid_api_key")
        if self.sender.key.public_key.address not in key.gateways:
            raise ApiError(401, "this node is not a gateway of the API key; call one it names", "authentication_error")
        balance = self.client.query(bank.BALANCE, key.developer).amount
        return Payer(key.developer, api_key_id=key_id, budget=min(key.remaining(), balance))

    def _signed(self, raw: bytes, request: GenerationRequest, headers: dict[str, str]) -> Payer:
        """A request the developer signed: the X-Racenet-* headers of `request_signing`."""
        try:
            fields = {name: headers[header] for name, header in SIGNED_HEADERS.items()}
            request_id, pub = bytes.fromhex(fields["request_id"]), bytes.fromhex(fields["public_key"])
            signature = bytes.fromhex(fields["signature"])
            prompt_tokens, expiry = _u63(fields["prompt_tokens"]), _u63(fields["expiry_height"])
            max_price = _u63(fields["max_price_per_token"])
            developer = PublicKey(pub).address
        except (KeyError, ValueError):
            raise ApiError(
                401,
                "send an API key (Authorization: Bearer rk-…) or a signed request ("
                + ", ".join(SIGNED_HEADERS.values())
                + ")",
                "authentication_error",
                "missing_credentials",
            ) from None
        chain_id = self.sender.chain_id or self.client.chain_id()
        auth = request_auth(
            chain_id,
            request_id,
            developer,
            request.model,
            transfer_agent=self.sender.key.public_key.address,
            prompt_tokens=prompt_tokens,
            max_tokens=request.max_tokens,
            max_price_per_token=max_price,
            body=raw,
            expiry_height=expiry,
        )
        if len(request_id) != 32 or not PublicKey(pub).verify(auth_sign_bytes(auth), signature):
            raise ApiError(401, "the request signature does not verify", "authentication_error", "invalid_signature")
        balance = self.client.query(bank.BALANCE, developer).amount
        return Payer(developer, b"", request_id, prompt_tokens, expiry, max_price, pub, signature, balance)

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
        chain_id = self.sender.chain_id or self.client.chain_id()
        headers = forward_headers(self.sender.key, chain_id, opened.request_id, executor, opened.raw)
        started = False
        try:
            with self.http.stream(
                "POST",
                endpoint.rstrip("/") + "/racenet/v1/execute",
                content=opened.raw,
                headers=headers,
                timeout=httpx.Timeout(FIRST_TOKEN_TIMEOUT, connect=CONNECT_TIMEOUT),
            ) as response:
                if response.status_code != 200:
                    raise _NoAnswer(f"HTTP {response.status_code}: {response.read()[:200]!r}")
                for line in response.iter_lines():
                    if line:
                        started = True
                        yield event_from_json(json.loads(line))
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError, TypeError) as e:
            if started:
                raise ApiError(502, f"the executor failed mid-answer: {e}", "server_error", "executor_failed") from e
            raise _NoAnswer(str(e)) from e

    def _reassign(self, opened: Opened) -> bytes:
        """Move the request to the next executor on chain (once the chain allows it) and return it."""
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    self.sender.send([MsgReassignRequest(opened.request_id)], timeout=START_TIMEOUT)
                    break
                except TxRejected as e:
                    if e.code != Code.TOO_EARLY or time.monotonic() > deadline:
                        raise
                    time.sleep(POLL_SECONDS)
            moved = self._opened(opened.request_id, opened.raw, opened.model)
        except ClientError as e:
            raise ApiError(503, f"could not re-route the request: {e}", "server_error", "no_executor") from e
        opened.endpoints = moved.endpoints
        return moved.executor


def _u63(text: str) -> int:
    """A header's non-negative integer below 2**63; ValueError otherwise."""
    value = int(text)
    if not 0 <= value < 2**63:
        raise ValueError(text)
    return value


def _rejection(e: TxRejected) -> ApiError:
    """The OpenAI-shaped error for a Start the chain refused."""
    status, type_, code = REJECTIONS.get(e.code, (400, "invalid_request_error", e.name))
    return ApiError(status, e.log, type_, code)


class _NoAnswer(Exception):
    """The executor could not be reached or refused before sending anything."""


@dataclass
class Opened:
    """A request opened on chain, ready to forward: the exact body, its executors' endpoints and attempts, and
    the price per token its Start escrowed at."""

    request_id: bytes
    raw: bytes
    model: str
    endpoints: dict[bytes, str]
    executor: bytes
    max_attempts: int
    price_per_token: int

    @property
    def id_hex(self) -> str:
        """The request id in hex (the chat completion id is `chatcmpl-<id_hex>`)."""
        return self.request_id.hex()
