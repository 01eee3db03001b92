"""What an API key's holder may read about it: balance, limit and spend, and the requests charged to it.

Both answers are found by the key itself (its on-chain id is the hash of the secret the caller sends), so a
caller sees only the key it holds. Amounts are in nicoin, the currency's base unit.
"""

from __future__ import annotations

from typing import Any

from racenet.chain.modules import bank, inference
from racenet.chain.modules.inference import ApiKey, KeyRequest
from racenet.crypto.address import encode_address
from racenet.node.client import ChainClient
from racenet.node.openai_format import ApiError
from racenet.node.transfer_agent import api_key_id_of

MAX_HISTORY = 1_000
"""The most requests one history answer lists."""


def _key(client: ChainClient, token: str) -> tuple[bytes, ApiKey]:
    """The key's id and record; 401 if the token is not an authorized API key."""
    key_id = api_key_id_of(token)
    record = client.query(inference.APIKEY, key_id)
    if record is None:
        raise ApiError(401, "unknown API key", "authentication_error", "invalid_api_key")
    return key_id, record


def status(client: ChainClient, token: str) -> dict[str, Any]:
    """`GET /v1/key`: the paying account's balance, the key's limit, spend and what it may still spend."""
    key_id, key = _key(client, token)
    balance = client.query(bank.BALANCE, key.developer).amount
    return {
        "data": {
            "id": key_id.hex(),
            "account": encode_address(key.developer),
            "balance": balance,
            "limit": int(key.spend_limit),
            "spent": int(key.spent),
            "limit_remaining": key.remaining(),
            "spendable": min(key.remaining(), balance),
            "requests": key.requests,
            "expiry_height": key.expiry_height,
            "revoked": key.revoked,
            "gateways": [encode_address(g) for g in key.gateways],
            "unit": "nicoin",
        }
    }


def history(client: ChainClient, token: str, limit: int) -> dict[str, Any]:
    """`GET /v1/key/requests`: the key's requests the chain still keeps, newest first, at most `limit`."""
    if not 1 <= limit <= MAX_HISTORY:
        raise ApiError(400, f"limit must be between 1 and {MAX_HISTORY}", param="limit")
    key_id, _ = _key(client, token)
    listed = client.query(inference.KEY_REQUESTS, key_id).requests
    return {"object": "list", "data": [_entry(item) for item in reversed(listed[-limit:])]}


def _entry(item: KeyRequest) -> dict[str, Any]:
    """One request of the history: open (with its escrow) or closed (with its receipt's counts and cost)."""
    if item.receipt is not None:
        r = item.receipt
        return {
            "id": item.id.hex(),
            "model": r.model,
            "status": str(r.status),
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "cost": int(r.cost),
            "height": r.height,
            "executor": encode_address(r.executor) if r.executor else None,
        }
    request = item.request
    assert request is not None, "the chain lists a request with neither record nor receipt"
    return {
        "id": item.id.hex(),
        "model": request.model,
        "status": "open",
        "prompt_tokens": request.prompt_tokens,
        "escrow": int(request.escrow),
        "executor": encode_address(request.executor) if request.executor else None,
    }
