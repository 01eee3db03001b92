"""inference messages, parameters, records, genesis state and queries.

Prompt and response bodies never reach the chain: it holds their hashes, token counts,
the escrow and the outcome.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar
from urllib.parse import urlsplit

from racenet.chain.authority import MAX_WINDOW_BLOCKS, AuthorityMsg, check_params
from racenet.chain.codec import MAX_U64, encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.modules.pricing.types import MAX_UNIT_PRICE
from racenet.chain.query import ADDRESS_ARG, HEX_ARG, NO_ARG, TEXT_ARG, optional_query, query
from racenet.chain.scalars import Address, Amount

AUTH_DOMAIN = b"racenet/inference/v1\x00"
API_KEY_DOMAIN = b"racenet/api-key/v1\x00"
KEY_REQUEST_DOMAIN = b"racenet/api-key-request/v1\x00"
MAX_MODELS = 16
MAX_GATEWAYS = 8
MAX_SPEND_LIMIT = 10**18
"""The largest API-key spend limit (10**9 icon): far below u64, so no sum of escrows and refunds overflows."""
MAX_UNITS_PER_TOKEN = 529_000
"""The most units of compute per token a model may have: a request of the longest prompt and completion (34,816
tokens by default) at the highest unit price then escrows less than 2^64 nicoin (docs/tokenomics.md)."""
MAX_MODEL_NAME = 128


def check_model(name: str, units_per_token: int) -> None:
    """Raise ChainError(INVALID_MESSAGE) unless a model has a 1-128 character name and 1 to MAX_UNITS_PER_TOKEN
    units of compute per token."""
    if not 0 < len(name) <= MAX_MODEL_NAME or not name.isprintable():
        raise ChainError(Code.INVALID_MESSAGE, f"a model name is 1 to {MAX_MODEL_NAME} printable characters")
    if not 1 <= units_per_token <= MAX_UNITS_PER_TOKEN:
        raise ChainError(Code.INVALID_MESSAGE, f"a model has 1 to {MAX_UNITS_PER_TOKEN} units of compute per token")


@dataclass(frozen=True)
class Params:
    """Request limits and retention (the unit-of-compute price is the pricing module's).

    A signed request names an expiry height at most `max_auth_blocks` ahead; a transfer agent
    may move a request to another executor only `reassign_delay_blocks` after it was routed;
    receipts are kept `receipt_retention_blocks` after a request closes (and at least until its
    signature expired, so its id can never be replayed). `allow_private_endpoints` admits
    loopback and private executor endpoints: for a devnet only.
    """

    max_tokens: int = 2_048
    max_prompt_tokens: int = 32_768
    expiry_blocks: int = 30
    max_attempts: int = 3
    max_auth_blocks: int = 600
    reassign_delay_blocks: int = 2
    receipt_retention_blocks: int = 100_000
    allow_private_endpoints: bool = False

    def validate(self) -> None:
        """Positive limits, and a longest request whose escrow fits a u64 for any model at any unit price."""
        if min(self.max_tokens, self.max_prompt_tokens, self.expiry_blocks, self.max_attempts) < 1:
            raise ValueError("max_tokens, max_prompt_tokens, expiry_blocks and max_attempts must be at least 1")
        if min(self.max_auth_blocks, self.receipt_retention_blocks) < 1:
            raise ValueError("max_auth_blocks and receipt_retention_blocks must be at least 1")
        windows = (self.expiry_blocks, self.max_auth_blocks, self.reassign_delay_blocks, self.receipt_retention_blocks)
        if max(windows) > MAX_WINDOW_BLOCKS:
            raise ValueError(f"expiry, auth, reassign and receipt windows are at most {MAX_WINDOW_BLOCKS} blocks")
        if (self.max_tokens + self.max_prompt_tokens) * MAX_UNITS_PER_TOKEN * MAX_UNIT_PRICE > MAX_U64:
            raise ValueError("max_tokens + max_prompt_tokens is too large: the escrow of a request could overflow")


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace inference's params; accepted only from the governance authority (a passed proposal)."""

    TYPE: ClassVar[str] = "inference/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True)
class MsgRegisterModel(AuthorityMsg):
    """Register a model with its units of compute per token (or change them); only from the governance
    authority. Once registered, nodes may serve it and requests to it are routed."""

    TYPE: ClassVar[str] = "inference/RegisterModel"
    model: str
    units_per_token: int

    def validate(self) -> None:
        """A short name and units of compute per token within the bound."""
        check_model(self.model, self.units_per_token)


@dataclass(frozen=True)
class MsgServeModels(Msg):
    """A Race node declares the models it serves and the URL transfer agents forward requests to."""

    TYPE: ClassVar[str] = "inference/ServeModels"
    models: tuple[str, ...]
    endpoint: str

    def validate(self) -> None:
        """At most 16 short model names and an http(s) endpoint with a host and no query or fragment."""
        if len(self.models) > MAX_MODELS or any(not 0 < len(m) <= 128 for m in self.models):
            raise ChainError(Code.INVALID_MESSAGE, f"serve 0 to {MAX_MODELS} models with names of 1-128 chars")
        check_endpoint_form(self.endpoint)


def check_endpoint_form(url: str) -> None:
    """An executor endpoint is `http(s)://host[:port][/path]`: no user info, query or fragment (SSRF, L1)."""
    if len(url) > 256 or not url.isascii() or not url.isprintable() or " " in url:
        raise ChainError(Code.INVALID_MESSAGE, "endpoint must be a printable ASCII URL of at most 256 chars")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ChainError(Code.INVALID_MESSAGE, f"endpoint is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ChainError(Code.INVALID_MESSAGE, "endpoint must be an http(s) URL with a host")
    if parts.query or parts.fragment or "?" in url or "#" in url or "@" in parts.netloc:
        raise ChainError(Code.INVALID_MESSAGE, "endpoint must not carry user info, a query or a fragment")


def is_private_host(host: str) -> bool:
    """Whether a host names this machine or a private network: loopback, private, link-local, `localhost`, or
    a numeric form resolvers read as an address (a real host name's last label starts with a letter)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return not name.rsplit(".", 1)[-1][:1].isalpha()  # `127.1`, `2130706433`, `0x7f000001`: numeric forms
    return not ip.is_global or ip.is_multicast


@dataclass(frozen=True, kw_only=True)
class MsgAuthorizeKey(Msg):
    """Authorize (or re-scope) an API key to start requests paid from the signer's account.

    The key is a bearer secret that only its user and the gateways it names ever see; the chain
    holds its id, `api_key_id(secret)`.
    """

    TYPE: ClassVar[str] = "inference/AuthorizeKey"
    key_id: bytes
    spend_limit: int
    expiry_height: int
    gateways: tuple[bytes, ...]

    def validate(self) -> None:
        """A 32-byte id, a limit in (0, MAX_SPEND_LIMIT], and 1 to 8 distinct gateway addresses."""
        if len(self.key_id) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "an API key id is 32 bytes")
        if not 0 < self.spend_limit <= MAX_SPEND_LIMIT:
            raise ChainError(Code.INVALID_MESSAGE, f"spend limit must be between 1 and {MAX_SPEND_LIMIT} nicoin")
        gateways = set(self.gateways)
        if not 0 < len(self.gateways) <= MAX_GATEWAYS or len(gateways) != len(self.gateways):
            raise ChainError(Code.INVALID_MESSAGE, f"name 1 to {MAX_GATEWAYS} distinct gateway nodes")
        if any(len(g) != 20 for g in gateways):
            raise ChainError(Code.INVALID_MESSAGE, "gateways are 20-byte node addresses")


@dataclass(frozen=True)
class MsgRevokeKey(Msg):
    """Withdraw an API key's authorization for good (its id can never be authorized again)."""

    TYPE: ClassVar[str] = "inference/RevokeKey"
    key_id: bytes

    def validate(self) -> None:
        """A 32-byte id."""
        if len(self.key_id) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "an API key id is 32 bytes")


def api_key_id(secret: bytes) -> bytes:
    """The on-chain id of an API key secret: a domain-tagged SHA-256, so the secret never reaches the chain."""
    return hashlib.sha256(API_KEY_DOMAIN + secret).digest()


def key_request_id(key_id: bytes, number: int) -> bytes:
    """The id of the `number`-th request charged to an API key: derived by the chain, chosen by nobody."""
    return hashlib.sha256(KEY_REQUEST_DOMAIN + key_id + number.to_bytes(8, "big")).digest()


@dataclass(frozen=True, kw_only=True)
class RequestAuth:
    """What a developer signs with its account key to pay for one request.

    Everything the charge depends on: the prompt's token count, the completion budget, the model,
    the highest price per token the developer accepts (the price is voted each cycle, so a request held
    across a cycle end could otherwise be opened at a higher one), the exact body (`prompt_hash`,
    SHA-256 of the HTTP body), a last height, the chain, and the node the developer hands it to
    (`transfer_agent`: nobody who copies the Start from a mempool can open it in their own name). So
    the most the developer can be charged is (prompt_tokens + max_tokens) × max_price_per_token.
    """

    chain_id: str
    request_id: bytes
    developer: bytes
    transfer_agent: bytes
    model: str
    prompt_tokens: int
    max_tokens: int
    max_price_per_token: int
    prompt_hash: bytes
    expiry_height: int


def auth_sign_bytes(auth: RequestAuth) -> bytes:
    """The bytes a developer key signs for a request."""
    return AUTH_DOMAIN + encode(auth)


@dataclass(frozen=True, kw_only=True)
class MsgStartRequest(Msg):
    """A transfer agent opens a request: escrow from the developer, executor drawn by the chain.

    Paid either by a developer's signature (`request_id`, `expiry_height`, `max_price_per_token`,
    `signer_key`, `signature` set; `api_key_id` empty) or by an API key this transfer agent is a
    gateway of (`api_key_id` set, the rest empty: the chain numbers the key's requests and the key's
    spend limit bounds the charge).
    """

    TYPE: ClassVar[str] = "inference/Start"
    WORK: ClassVar[int] = 2
    request_id: bytes
    developer: bytes
    model: str
    prompt_tokens: int
    max_tokens: int
    max_price_per_token: int
    prompt_hash: bytes
    expiry_height: int
    signer_key: bytes
    signature: bytes
    api_key_id: bytes

    @property
    def by_api_key(self) -> bool:
        """Whether an API key pays (else the developer's signature)."""
        return bool(self.api_key_id)

    def validate(self) -> None:
        """Field sizes, one way of paying, and a non-empty completion budget."""
        if len(self.prompt_hash) != 32 or len(self.developer) != 20:
            raise ChainError(Code.INVALID_MESSAGE, "prompt hash is 32 bytes and developer a 20-byte address")
        signed = (len(self.request_id), len(self.signer_key), len(self.signature), len(self.api_key_id))
        by_key_extras = self.expiry_height or self.max_price_per_token
        if signed not in ((32, 32, 64, 0), (0, 0, 0, 32)) or (self.by_api_key and by_key_extras):
            raise ChainError(
                Code.INVALID_MESSAGE,
                "pay by signature (32-byte request id and key, 64-byte signature, expiry, max price) or by a "
                "32-byte API key id",
            )
        if self.max_tokens < 1:
            raise ChainError(Code.INVALID_MESSAGE, "max_tokens must be at least 1")

    def auth(self, chain_id: str, transfer_agent: bytes) -> RequestAuth:
        """The authorization a signed request carries a signature for, if `transfer_agent` sends it."""
        return RequestAuth(
            chain_id=chain_id,
            request_id=self.request_id,
            developer=self.developer,
            transfer_agent=transfer_agent,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            max_tokens=self.max_tokens,
            max_price_per_token=self.max_price_per_token,
            prompt_hash=self.prompt_hash,
            expiry_height=self.expiry_height,
        )


@dataclass(frozen=True)
class MsgReassignRequest(Msg):
    """The request's transfer agent moves it to the next executor after the current one failed."""

    TYPE: ClassVar[str] = "inference/Reassign"
    WORK: ClassVar[int] = 1
    request_id: bytes

    def validate(self) -> None:
        """A 32-byte request id."""
        if len(self.request_id) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "a request id is 32 bytes")


@dataclass(frozen=True, kw_only=True)
class MsgFinishRequest(Msg):
    """The executor reports the completion: actual tokens and the response hash; it is paid, the rest refunded."""

    TYPE: ClassVar[str] = "inference/Finish"
    request_id: bytes
    completion_tokens: int
    response_hash: bytes

    def validate(self) -> None:
        """A 32-byte request id and response hash."""
        if len(self.request_id) != 32 or len(self.response_hash) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "request id and response hash are 32 bytes")


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
    api_key_id: bytes
    key_number: int
    auth_expiry: int
    route_round: int
    executor: Address
    attempt: int
    tried: tuple[Address, ...]
    routed_height: int
    expiry_height: int


class ReceiptStatus(StrEnum):
    """How a request ended: finished and paid, expired unfinished, or finished but refunded (found invalid)."""

    FINISHED = "finished"
    EXPIRED = "expired"
    REFUNDED = "refunded"


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """A finished (or expired) request's outcome, for audits and spot checks."""

    developer: Address
    executor: Address
    route_round: int
    model: str
    prompt_tokens: int
    completion_tokens: int
    prompt_hash: bytes
    response_hash: bytes
    cost: Amount
    height: int
    status: ReceiptStatus
    api_key_id: bytes
    key_number: int
    prune_height: int


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """An API key: whose account pays, its limit and what it has spent, its expiry, gateways and request count.

    `spent` is what open and finished requests have escrowed minus their refunds, never below 0, so
    a refund can never raise what the key may spend above its limit. A revoked key stays revoked.
    """

    developer: Address
    spend_limit: Amount
    spent: Amount
    expiry_height: int
    gateways: tuple[Address, ...]
    requests: int
    revoked: bool

    def remaining(self) -> int:
        """nicoin the key may still escrow."""
        return max(int(self.spend_limit) - int(self.spent), 0)


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key's id and record."""

    id: bytes
    key: ApiKey


@dataclass(frozen=True)
class ApiKeys:
    """The API keys of an account."""

    keys: tuple[ApiKeyInfo, ...]


@dataclass(frozen=True)
class KeyRequest:
    """A request charged to an API key: its id, and its open record or its receipt."""

    id: bytes
    request: Request | None
    receipt: Receipt | None


@dataclass(frozen=True)
class KeyRequests:
    """The requests charged to an API key whose records are still kept, oldest first."""

    requests: tuple[KeyRequest, ...]


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
class KeyRequestEntry:
    """A request id charged to an API key, in the order the key's requests were made."""

    key_id: bytes
    number: int
    request_id: bytes


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
    """Params, models, servers, API keys with their request lists, open requests and receipts."""

    params: Params = Params()
    models: tuple[ModelEntry, ...] = ()
    servers: tuple[ServerEntry, ...] = ()
    api_keys: tuple[ApiKeyInfo, ...] = ()
    key_requests: tuple[KeyRequestEntry, ...] = ()
    requests: tuple[RequestEntry, ...] = ()
    receipts: tuple[ReceiptEntry, ...] = ()

    def validate(self) -> None:
        """Models have a name and at least one unit per token; ids are 32 bytes and unique."""
        for model in self.models:
            if not model.id or not 1 <= model.units_per_token <= MAX_UNITS_PER_TOKEN:
                raise ValueError(f"a model needs a name and 1 to {MAX_UNITS_PER_TOKEN} units of compute per token")
        ids = [r.id for r in self.requests] + [r.id for r in self.receipts]
        if any(len(i) != 32 for i in ids) or len(set(ids)) != len(ids):
            raise ValueError("request ids are 32 bytes and appear once among requests and receipts")


PARAMS = query("inference/params", NO_ARG, Params)
MODELS = query("inference/models", NO_ARG, Models)
SERVERS = query("inference/servers", TEXT_ARG, Servers)
REQUEST = optional_query("inference/request", HEX_ARG, RequestInfo)
PENDING = query("inference/pending", ADDRESS_ARG, PendingReward)
APIKEY = optional_query("inference/apikey", HEX_ARG, ApiKey)
APIKEYS = query("inference/apikeys", ADDRESS_ARG, ApiKeys)
KEY_REQUESTS = query("inference/key_requests", HEX_ARG, KeyRequests)
