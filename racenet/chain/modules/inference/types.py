"""inference messages, parameters, records, genesis state and queries.

Prompt and response bodies never reach the chain: it holds their hashes, token counts,
the escrow and the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from racenet.chain.codec import encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import ADDRESS_ARG, HEX_ARG, NO_ARG, TEXT_ARG, optional_query, query
from racenet.chain.scalars import Address, Amount

AUTH_DOMAIN = b"racenet/inference/v1\x00"
MAX_MODELS = 16


@dataclass(frozen=True)
class Params:
    """Pricing v1 and request limits.

    Price per token = `unit_price` (nicoin per unit of compute) × the model's units per token.
    """

    unit_price: Amount = Amount(1_000)
    max_tokens: int = 2_048
    expiry_blocks: int = 30
    max_attempts: int = 3


@dataclass(frozen=True)
class MsgServeModels(Msg):
    """A Race node declares the models it serves and the URL transfer agents forward requests to."""

    TYPE: ClassVar[str] = "inference/ServeModels"
    models: tuple[str, ...]
    endpoint: str

    def validate(self) -> None:
        """At most 16 short model names and an http(s) endpoint."""
        if len(self.models) > MAX_MODELS or any(not 0 < len(m) <= 128 for m in self.models):
            raise ChainError(Code.INVALID_MESSAGE, f"serve 0 to {MAX_MODELS} models with names of 1-128 chars")
        if not self.endpoint.startswith(("http://", "https://")) or len(self.endpoint) > 256:
            raise ChainError(Code.INVALID_MESSAGE, "endpoint must be an http(s) URL of at most 256 chars")


@dataclass(frozen=True)
class MsgAuthorizeKey(Msg):
    """Let an API key (an ed25519 session key) start requests paid from the signer's account."""

    TYPE: ClassVar[str] = "inference/AuthorizeKey"
    key: bytes
    spend_limit: int

    def validate(self) -> None:
        """A 32-byte key and a positive limit."""
        if len(self.key) != 32 or self.spend_limit <= 0:
            raise ChainError(Code.INVALID_MESSAGE, "an API key is a 32-byte public key with a positive spend limit")


@dataclass(frozen=True)
class MsgRevokeKey(Msg):
    """Withdraw an API key's authorization."""

    TYPE: ClassVar[str] = "inference/RevokeKey"
    key: bytes


@dataclass(frozen=True, kw_only=True)
class RequestAuth:
    """What the developer (or its API key) signs to pay for one request.

    `prompt_hash` is the SHA-256 of the exact HTTP request body, so a client signs without a
    tokenizer; the transfer agent declares the prompt's token count.
    """

    chain_id: str
    request_id: bytes
    developer: bytes
    model: str
    max_tokens: int
    prompt_hash: bytes


def auth_sign_bytes(auth: RequestAuth) -> bytes:
    """The bytes a developer key or API key signs for a request."""
    return AUTH_DOMAIN + encode(auth)


@dataclass(frozen=True, kw_only=True)
class MsgStartRequest(Msg):
    """A transfer agent opens a request: escrow from the developer, executor by the routing rule."""

    TYPE: ClassVar[str] = "inference/Start"
    request_id: bytes
    developer: bytes
    model: str
    prompt_tokens: int
    max_tokens: int
    prompt_hash: bytes
    cycle: int
    executor: bytes
    auth_key: bytes
    auth_signature: bytes

    def validate(self) -> None:
        """Field sizes and a non-empty completion budget."""
        if len(self.request_id) != 32 or len(self.prompt_hash) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "request id and prompt hash are 32 bytes")
        if len(self.developer) != 20 or len(self.executor) != 20:
            raise ChainError(Code.INVALID_MESSAGE, "developer and executor are 20-byte addresses")
        if len(self.auth_key) != 32 or len(self.auth_signature) != 64:
            raise ChainError(Code.INVALID_MESSAGE, "authorization is a 32-byte key and a 64-byte signature")
        if self.max_tokens < 1:
            raise ChainError(Code.INVALID_MESSAGE, "max_tokens must be at least 1")

    def auth(self, chain_id: str) -> RequestAuth:
        """The authorization this message carries a signature for."""
        return RequestAuth(
            chain_id=chain_id,
            request_id=self.request_id,
            developer=self.developer,
            model=self.model,
            max_tokens=self.max_tokens,
            prompt_hash=self.prompt_hash,
        )


@dataclass(frozen=True)
class MsgReassignRequest(Msg):
    """The request's transfer agent moves it to the next executor after the current one failed."""

    TYPE: ClassVar[str] = "inference/Reassign"
    request_id: bytes


@dataclass(frozen=True, kw_only=True)
class MsgFinishRequest(Msg):
    """The executor reports the completion: actual tokens and the response hash; it is paid, the rest refunded."""

    TYPE: ClassVar[str] = "inference/Finish"
    request_id: bytes
    completion_tokens: int
    response_hash: bytes

    def validate(self) -> None:
        """A 32-byte response hash."""
        if len(self.response_hash) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "response hash is 32 bytes")


@dataclass(frozen=True)
class Served:
    """The models a node serves and where transfer agents reach it."""

    models: tuple[str, ...]
    endpoint: str


@dataclass(frozen=True, kw_only=True)
class Request:
    """An open request's record."""

    developer: Address
    transfer_agent: Address
    model: str
    prompt_tokens: int
    max_tokens: int
    prompt_hash: bytes
    price_per_token: Amount
    escrow: Amount
    auth_key: bytes
    cycle: int
    executor: Address
    attempt: int
    tried: tuple[Address, ...]
    expiry_height: int


class ReceiptStatus(StrEnum):
    """How a request ended."""

    FINISHED = "finished"
    EXPIRED = "expired"


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """A finished (or expired) request's outcome, for audits and spot checks."""

    developer: Address
    executor: Address
    model: str
    prompt_tokens: int
    completion_tokens: int
    prompt_hash: bytes
    response_hash: bytes
    cost: Amount
    height: int
    status: ReceiptStatus


@dataclass(frozen=True)
class ApiKey:
    """An authorized API key: whose account pays and how much it may still escrow."""

    developer: Address
    remaining: Amount


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its units of compute per token and its price per token in nicoin."""

    id: str
    units_per_token: int
    price_per_token: int


@dataclass(frozen=True)
class Models:
    """Every registered model."""

    models: tuple[ModelInfo, ...]


@dataclass(frozen=True)
class ServerInfo:
    """A node serving a model: its Race weight (the executor draw's weight) and its endpoint."""

    address: Address
    weight: int
    endpoint: str


@dataclass(frozen=True)
class Servers:
    """The nodes serving a model, ordered by address."""

    servers: tuple[ServerInfo, ...]


@dataclass(frozen=True)
class RequestInfo:
    """A request's on-chain state: the open request, or its receipt once closed."""

    request: Request | None
    receipt: Receipt | None


@dataclass(frozen=True)
class PendingReward:
    """nicoin an executor earned and the rewards module has not released yet."""

    address: Address
    amount: int


@dataclass(frozen=True)
class ModelEntry:
    """A model registered at genesis: its id and units of compute per token."""

    id: str
    units_per_token: int


@dataclass(frozen=True)
class ServerEntry:
    """A serving node: its account, models and endpoint."""

    address: Address
    models: tuple[str, ...]
    endpoint: str


@dataclass(frozen=True)
class ApiKeyEntry:
    """An authorized API key."""

    key: bytes
    developer: Address
    remaining: int


@dataclass(frozen=True)
class RequestEntry:
    """An open request (its escrow is in bank's genesis)."""

    id: bytes
    request: Request


@dataclass(frozen=True)
class ReceiptEntry:
    """A closed request's receipt (kept so its id cannot be replayed)."""

    id: bytes
    receipt: Receipt


@dataclass(frozen=True)
class InferenceGenesis(GenesisState):
    """Params, models, servers, API keys, open requests and receipts."""

    params: Params = Params()
    models: tuple[ModelEntry, ...] = ()
    servers: tuple[ServerEntry, ...] = ()
    api_keys: tuple[ApiKeyEntry, ...] = ()
    requests: tuple[RequestEntry, ...] = ()
    receipts: tuple[ReceiptEntry, ...] = ()

    def validate(self) -> None:
        """Models have a name and at least one unit per token; ids are 32 bytes and unique."""
        for model in self.models:
            if not model.id or model.units_per_token < 1:
                raise ValueError("a model needs a name and at least 1 unit of compute per token")
        ids = [r.id for r in self.requests] + [r.id for r in self.receipts]
        if any(len(i) != 32 for i in ids) or len(set(ids)) != len(ids):
            raise ValueError("request ids are 32 bytes and appear once among requests and receipts")


PARAMS = query("inference/params", NO_ARG, Params)
MODELS = query("inference/models", NO_ARG, Models)
SERVERS = query("inference/servers", TEXT_ARG, Servers)
REQUEST = optional_query("inference/request", HEX_ARG, RequestInfo)
PENDING = query("inference/pending", ADDRESS_ARG, PendingReward)
APIKEY = optional_query("inference/apikey", HEX_ARG, ApiKey)
