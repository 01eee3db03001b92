"""Signed requests: call a node's API with your account key instead of an API key.

The signature covers the chain id, a fresh request id, your address, the model, max_tokens and
the SHA-256 of the exact body bytes, so nobody can replay, redirect or alter the request.
"""

from __future__ import annotations

import hashlib
import json
import os

from racenet.chain.modules.inference import RequestAuth, auth_sign_bytes
from racenet.crypto.keys import PrivateKey
from racenet.ml.backend import DEFAULT_MAX_TOKENS


def request_auth(
    chain_id: str, request_id: bytes, developer: bytes, model: str, max_tokens: int, body: bytes
) -> RequestAuth:
    """What a developer or its API key signs for one request body."""
    return RequestAuth(
        chain_id=chain_id,
        request_id=request_id,
        developer=developer,
        model=model,
        max_tokens=max_tokens,
        prompt_hash=hashlib.sha256(body).digest(),
    )


def signed_headers(key: PrivateKey, chain_id: str, body: bytes, request_id: bytes | None = None) -> dict[str, str]:
    """HTTP headers that authorize `body` (a chat completion request) to be paid from `key`'s account."""
    doc = json.loads(body)
    request_id = request_id or os.urandom(32)
    max_tokens = int(doc.get("max_completion_tokens", doc.get("max_tokens", DEFAULT_MAX_TOKENS)))
    auth = request_auth(chain_id, request_id, key.public_key.address, str(doc["model"]), max_tokens, body)
    return {
        "content-type": "application/json",
        "x-racenet-request-id": request_id.hex(),
        "x-racenet-public-key": key.public_key.raw.hex(),
        "x-racenet-signature": key.sign(auth_sign_bytes(auth)).hex(),
    }
