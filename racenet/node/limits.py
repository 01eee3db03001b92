"""Limits on the node API before any expensive work (security review finding M9).

M9: request bodies were unbounded and read before authentication, and any keypair (even an unfunded
one) could make the transfer agent tokenize a prompt and query the chain. This module gives the API:

- `read_limited_body`: the body, refused with 413 past `Limits.max_body_bytes` (a declared
  Content-Length at once, a chunked body as soon as it crosses the limit);
- `RateLimiter`: token buckets keyed by string (client IP before authentication, the claimed
  credential after), answered by 429 with `Retry-After`;
- `ConcurrencyLimiter`: at most `Limits.max_in_flight_per_key` requests in flight per credential;
- `credential_key`: the credential a request claims, read from its headers without any chain query.

Every refusal is an `ApiError` in OpenAI's shape; a 429 is `type "requests"`, `code "rate_limit_exceeded"`,
which the official `openai` client raises as `openai.RateLimitError`.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import ContentStream, StreamingResponse
from starlette.types import Receive, Scope, Send

from racenet.node.openai_format import ApiError

Clock = Callable[[], float]


@dataclass(frozen=True)
class Limits:
    """The API's limits (M9); the defaults suit one laptop node serving a handful of developers.

    - `max_body_bytes`: 1 MiB. A chat request is a few KiB; 1 MiB also bounds what the tokenizer sees.
    - `key_rate`/`key_burst`: 5 requests/s per credential (API key or signing public key), bursts of 20.
    - `ip_rate`/`ip_burst`: 20 requests/s per client IP before authentication, bursts of 40 (fresh keypairs
      cost nothing, so this bucket is what bounds one host; behind a reverse proxy every client shares it).
    - `max_in_flight_per_key`: 4 concurrent requests per credential (each holds a generation and a thread).
    - `max_tracked_keys`: 10,000 buckets per limiter (a few MiB at most), least recently used evicted first.
    """

    max_body_bytes: int = 1 << 20
    key_rate: float = 5.0
    key_burst: int = 20
    ip_rate: float = 20.0
    ip_burst: int = 40
    max_in_flight_per_key: int = 4
    max_tracked_keys: int = 10_000

    def __post_init__(self) -> None:
        numbers = (self.max_body_bytes, self.key_rate, self.key_burst, self.ip_rate, self.ip_burst)
        if min(numbers) <= 0 or self.max_in_flight_per_key < 1 or self.max_tracked_keys < 1:
            raise ValueError(f"every limit must be positive: {self}")


DEFAULT_LIMITS = Limits()


def too_large(max_bytes: int) -> ApiError:
    """The 413 for a body over `max_bytes`."""
    return ApiError(413, f"the request body is over {max_bytes} bytes", code="request_too_large")


def rate_limited(message: str, retry_after: int) -> ApiError:
    """A 429 in OpenAI's shape with a `Retry-After` (whole seconds, at least 1)."""
    seconds = max(1, retry_after)
    return ApiError(429, message, "requests", "rate_limit_exceeded", headers={"Retry-After": str(seconds)})


async def read_limited_body(request: Request, max_bytes: int) -> bytes:
    """The request body, or ApiError 413 once it is over `max_bytes` (never buffering more than one chunk past it)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(declared) > max_bytes:
            raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by string: `capacity` requests at once, refilled at `rate` per second.

    At most `max_keys` buckets are kept; a new key evicts the least recently used one, which has had the
    longest to refill (a bucket refilled to capacity is the same as a new one, so evicting it loses nothing).
    """

    def __init__(self, capacity: int, rate: float, max_keys: int = 10_000, clock: Clock = time.monotonic) -> None:
        self.capacity = float(capacity)
        self.rate = rate
        self.max_keys = max_keys
        self.clock = clock
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one request of `key`'s bucket; ApiError 429 with `Retry-After` when it is empty."""
        with self.lock:
            now = self.clock()
            bucket = self._bucket(key, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return
            wait = math.ceil((1 - bucket.tokens) / self.rate)
        raise rate_limited(f"rate limit exceeded: at most {self.rate:g} requests/s (bursts of {self.capacity:g})", wait)

    def _bucket(self, key: str, now: float) -> _Bucket:
        """`key`'s bucket, now the most recently used; a full new one if it is not tracked."""
        bucket = self.buckets.get(key)
        if bucket is not None:
            self.buckets.move_to_end(key)
            return bucket
        while len(self.buckets) >= self.max_keys:
            self.buckets.popitem(last=False)
        bucket = self.buckets[key] = _Bucket(self.capacity, now)
        return bucket


class Slot:
    """One in-flight request of a key; `release` is idempotent."""

    def __init__(self, limiter: ConcurrencyLimiter, key: str) -> None:
        self.limiter = limiter
        self.key = key
        self.released = False

    def release(self) -> None:
        """Give the slot back (again: no effect)."""
        if not self.released:
            self.released = True
            self.limiter._release(self.key)


class ConcurrencyLimiter:
    """At most `limit` requests in flight per key; only keys with a request in flight are tracked."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight: dict[str, int] = {}
        self.lock = threading.Lock()

    def acquire(self, key: str) -> Slot:
        """A slot for one more request of `key`; ApiError 429 if it already has `limit` in flight."""
        with self.lock:
            count = self.in_flight.get(key, 0)
            if count >= self.limit:
                raise rate_limited(f"too many concurrent requests: at most {self.limit} in flight per credential", 1)
            self.in_flight[key] = count + 1
        return Slot(self, key)

    def _release(self, key: str) -> None:
        with self.lock:
            count = self.in_flight.pop(key, 0) - 1
            if count > 0:
                self.in_flight[key] = count


class SlotStreamingResponse(StreamingResponse):
    """A streaming response that releases its slot when it ends, however it ends (done, error, disconnect)."""

    def __init__(
        self,
        content: ContentStream,
        slot: Slot,
        media_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream, then release the slot."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def credential_key(headers: Mapping[str, str]) -> str | None:
    """A fixed-size key for the credential a request claims (not verified, no chain query), or None.

    `Authorization: Bearer <token>` → sha256 of the token; a signed request → sha256 of its
    `X-Racenet-Public-Key`. Whitespace and case are dropped first, as hex decoding ignores them, so
    spellings of one credential share one bucket.
    """
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return "bearer:" + _digest(token)
    public_key = headers.get("x-racenet-public-key")
    if public_key:
        return "signed:" + _digest(public_key)
    return None


def _digest(value: str) -> str:
    return hashlib.sha256("".join(value.split()).lower().encode()).hexdigest()


def client_ip(request: Request) -> str:
    """The peer address of the connection (proxies' forwarding headers are not trusted)."""
    return request.client.host if request.client is not None else "unknown"
