"""Signed requests: call a node's API with your account key instead of an API key.

The signature covers the chain id, a fresh request id, your address, the node you send it to
(its account: `GET <node API>/racenet/v1/node`), the model, the prompt's token count, max_tokens,
the highest price per token you accept (`racenet price show`: providers vote it each cycle), the
SHA-256 of the exact body bytes and a last block height, so nobody can replay, redirect, alter
or overcharge the request: the most it can cost is (prompt_tokens + max_tokens) × that price.
Count the prompt's tokens with the model's own tokenizer (`prompt_token_count`), as the executor
does before it generates.
"""

from __future__ import annotations

import hashlib
import json
import os

from racenet.chain.modules.inference import RequestAuth, auth_sign_bytes
from racenet.crypto.keys import PrivateKey
from racenet.ml.backend import DEFAULT_MAX_TOKENS, Backend
from racenet.node.openai_format import parse_request

SIGNED_HEADERS = {
    "request_id": "x-racenet-request-id",
    "public_key": "x-racenet-public-key",
    "signature": "x-racenet-signature",
    "prompt_tokens": "x-racenet-prompt-tokens",
    "expiry_height": "x-racenet-expiry-height",
    "max_price_per_token": "x-racenet-max-price-per-token",
}
"""The headers of a signed request, by the field they carry."""


def request_auth(
    chain_id: str,
    request_id: bytes,
    developer: bytes,
    model: str,
    *,
    transfer_agent: bytes,
    prompt_tokens: int,
    max_tokens: int,
    max_price_per_token: int,
    body: bytes,
    expiry_height: int,
) -> RequestAuth:
    """What a developer signs for one request body."""
    return RequestAuth(
        chain_id=chain_id,
        request_id=request_id,
        developer=developer,
        transfer_agent=transfer_agent,
        model=model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        max_price_per_token=max_price_per_token,
        prompt_hash=hashlib.sha256(body).digest(),
        expiry_height=expiry_height,
    )


def prompt_token_count(backend: Backend, body: bytes) -> int:
    """The prompt tokens the model reads for a chat completion body (what a signed request must declare)."""
    _, request, _ = parse_request(body)
    return len(backend.tokenize_chat(request.messages, model=request.model))


def signed_headers(
    key: PrivateKey,
    chain_id: str,
    body: bytes,
    *,
    transfer_agent: bytes,
    prompt_tokens: int,
    expiry_height: int,
    max_price_per_token: int,
    request_id: bytes | None = None,
) -> dict[str, str]:
    """HTTP headers that authorize `body` (a chat completion request), sent to the node whose account is
    `transfer_agent`, to be paid from `key`'s account until block `expiry_height` at no more than
    `max_price_per_token` nicoin per token."""
    doc = json.loads(body)
    request_id = request_id or os.urandom(32)
    max_tokens = int(doc.get("max_completion_tokens", doc.get("max_tokens", DEFAULT_MAX_TOKENS)))
    auth = request_auth(
        chain_id,
        request_id,
        key.public_key.address,
        str(doc["model"]),
        transfer_agent=transfer_agent,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        max_price_per_token=max_price_per_token,
        body=body,
        expiry_height=expiry_height,
    )
    values = {
        "request_id": request_id.hex(),
        "public_key": key.public_key.raw.hex(),
        "signature": key.sign(auth_sign_bytes(auth)).hex(),
        "prompt_tokens": str(prompt_tokens),
        "expiry_height": str(expiry_height),
        "max_price_per_token": str(max_price_per_token),
    }
    return {"content-type": "application/json", **{SIGNED_HEADERS[k]: v for k, v in values.items()}}
