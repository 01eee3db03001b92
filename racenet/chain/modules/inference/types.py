"""inference messages, parameters and records.

Prompt and response bodies never reach the chain: it holds their hashes, token counts,
the escrow and the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from racenet.chain.codec import encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Msg

AUTH_DOMAIN = b"racenet/inference/v1\x00"
MAX_MODELS = 16


@dataclass(frozen=True)
class Params:
    """Pricing v1 and request limits.

    Price per token = `unit_price` (nicoin per unit of compute) × the model's units per token.
    """

    unit_price: int = 1_000
    max_tokens: int = 2_048
    expiry_blocks: int = 30
    max_attempts: int = 3


@dataclass(frozen=True)
class ServeModels(Msg):
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
class AuthorizeKey(Msg):
    """Let an API key (an ed25519 session key) start requests paid from the signer's account."""

    TYPE: ClassVar[str] = "inference/AuthorizeKey"
    key: bytes
    spend_limit: int

    def validate(self) -> None:
        """A 32-byte key and a positive limit."""
        if len(self.key) != 32 or self.spend_limit <= 0:
            raise ChainError(Code.INVALID_MESSAGE, "an API key is a 32-byte public key with a positive spend limit")


@dataclass(frozen=True)
class RevokeKey(Msg):
    """Withdraw an API key's authorization."""

    TYPE: ClassVar[str] = "inference/RevokeKey"
    key: bytes


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Start(Msg):
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
        return RequestAuth(chain_id, self.request_id, self.developer, self.model, self.max_tokens, self.prompt_hash)


@dataclass(frozen=True)
class Reassign(Msg):
    """The request's transfer agent moves it to the next executor after the current one failed."""

    TYPE: ClassVar[str] = "inference/Reassign"
    request_id: bytes


@dataclass(frozen=True)
class Finish(Msg):
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
class Request:
    """An open request's record."""

    developer: bytes
    transfer_agent: bytes
    model: str
    prompt_tokens: int
    max_tokens: int
    prompt_hash: bytes
    price_per_token: int
    escrow: int
    auth_key: bytes
    cycle: int
    executor: bytes
    attempt: int
    tried: tuple[bytes, ...]
    expiry_height: int


@dataclass(frozen=True)
class Receipt:
    """A finished (or expired) request's outcome, for audits and spot checks."""

    developer: bytes
    executor: bytes
    model: str
    prompt_tokens: int
    completion_tokens: int
    prompt_hash: bytes
    response_hash: bytes
    cost: int
    height: int
    status: str


@dataclass(frozen=True)
class ApiKey:
    """An authorized API key: whose account pays and how much it may still escrow."""

    developer: bytes
    remaining: int
