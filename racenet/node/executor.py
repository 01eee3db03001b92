"""The executor: runs a forwarded request on the local backend, keeps its logprobs, and reports it on chain.

A transfer agent forwards a request after its `inference/Start` passed CheckTx, signed with the
TA's node key; the executor serves only registered Race nodes, and settles only if the prompt token
count the TA declared on chain is the one its model read (so a TA cannot overcharge a developer).
It streams events back as JSON lines at once (the user is waiting), then, off the user's path,
waits for the Start to be in a block, checks that the chain names it as the executor, and sends
`inference/Finish` with the completion's token count and response hash. Per-token logprobs (with top-k alternatives) are
kept in `<state>/executions.db` for later spot checks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from racenet.chain.modules import inference, race
from racenet.chain.modules.inference import MsgFinishRequest
from racenet.crypto.address import address_from_pubkey
from racenet.crypto.keys import PublicKey
from racenet.ml.backend import Backend, FinishEvent, GenerationEvent, GenerationRequest, TokenEvent, TopLogprob, Usage
from racenet.node.client import ChainClient, ClientError
from racenet.node.compute import ComputeThread
from racenet.node.openai_format import ApiError, parse_request
from racenet.node.sender import TxSender

log = logging.getLogger(__name__)

START_WAIT_SECONDS = 60.0
NODES_CACHE_SECONDS = 30.0


def event_json(event: GenerationEvent) -> dict[str, Any]:
    """A generation event as one JSON line of the executor → TA stream."""
    if isinstance(event, FinishEvent):
        return {"finish": event.finish_reason, "text": event.text, "usage": asdict(event.usage)}
    return {**asdict(event), "top_logprobs": [asdict(t) for t in event.top_logprobs]}


def event_from_json(doc: dict[str, Any]) -> GenerationEvent:
    """Parse one line of the executor → TA stream."""
    if "finish" in doc:
        return FinishEvent(doc["finish"], Usage(**doc["usage"]), doc.get("text", ""))
    tops = tuple(TopLogprob(**t) for t in doc.get("top_logprobs", []))
    return TokenEvent(doc["text"], doc["token_id"], doc["token"], doc["logprob"], tops)


def forward_signature_ok(body: bytes, pub_hex: str, sig_hex: str) -> bytes | None:
    """The signer's address if `sig` is its signature over SHA-256(body), else None."""
    try:
        pub, sig = bytes.fromhex(pub_hex), bytes.fromhex(sig_hex)
        ok = len(pub) == 32 and PublicKey(pub).verify(hashlib.sha256(body).digest(), sig)
    except ValueError:
        return None
    return address_from_pubkey(pub) if ok else None


class Executor:
    """Runs forwarded requests one at a time on the backend and settles them on chain."""

    def __init__(
        self, backend: Backend, client: ChainClient, sender: TxSender, state_dir: Path, compute: ComputeThread
    ) -> None:
        self.backend = backend
        self.compute = compute
        self.client = client
        self.sender = sender
        self.address = sender.key.public_key.address
        state_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(state_dir / "executions.db", check_same_thread=False, isolation_level=None)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS executions (request_id TEXT PRIMARY KEY, prompt_tokens INTEGER, "
            "tokens TEXT NOT NULL, response_hash TEXT NOT NULL, created INTEGER NOT NULL)"
        )
        self.db_lock = threading.Lock()
        self.active = 0
        self.active_lock = threading.Lock()
        self._nodes: set[bytes] = set()
        self._nodes_at = 0.0

    def busy(self) -> bool:
        """Whether a user request is running (the Race miner yields while it is)."""
        return self.active > 0

    def authorize(self, body: bytes, pub_hex: str, sig_hex: str) -> None:
        """Accept forwards only from registered Race nodes (the transfer agents)."""
        signer = forward_signature_ok(body, pub_hex, sig_hex)
        if signer is None:
            raise ApiError(401, "the forward is not signed by its transfer agent", "authentication_error")
        if signer not in self._registered_nodes():
            raise ApiError(403, "only registered Race nodes may forward requests", "permission_error")

    def _registered_nodes(self) -> set[bytes]:
        if time.monotonic() - self._nodes_at > NODES_CACHE_SECONDS:
            self._nodes = {n.address for n in self.client.query(race.NODES).nodes}
            self._nodes_at = time.monotonic()
        return self._nodes

    def execute(self, forward: dict[str, Any]) -> Iterator[bytes]:
        """Generate the forwarded request, yielding JSON lines; then settle it in the background.

        The model runs on the node's compute thread (see `racenet.node.compute`).
        """
        _, request, _ = parse_request(json.dumps(forward["body"]).encode())
        lines: queue.Queue[bytes | BaseException | None] = queue.Queue()
        self.compute.submit(self._generate, request, forward, lines)
        while (line := lines.get()) is not None:
            if isinstance(line, BaseException):
                raise line
            yield line

    def _generate(self, request: GenerationRequest, forward: dict[str, Any], lines: queue.Queue[Any]) -> None:
        """Run one generation on the compute thread, passing each event on as a JSON line."""
        request_id, start_tx = str(forward["request_id"]), str(forward["start_tx"])
        tokens: list[TokenEvent] = []
        text: list[str] = []
        with self.active_lock:
            self.active += 1
        try:
            for event in self.backend.generate(request):
                text.append(event.text)
                if isinstance(event, TokenEvent):
                    tokens.append(event)
                else:
                    self._record(request_id, event.usage, tokens, "".join(text))
                    threading.Thread(
                        target=self._settle,
                        args=(request_id, start_tx, event.usage, "".join(text)),
                        name=settlement_thread_name(request_id),
                        daemon=True,
                    ).start()
                lines.put(json.dumps(event_json(event)).encode() + b"\n")
        except BaseException as e:
            lines.put(e)
        finally:
            with self.active_lock:
                self.active -= 1
            lines.put(None)

    def _record(self, request_id: str, usage: Usage, tokens: list[TokenEvent], text: str) -> None:
        """Keep the logprobs this executor reported, for spot checks."""
        doc = json.dumps([event_json(t) for t in tokens])
        with self.db_lock:
            self.db.execute(
                "INSERT OR REPLACE INTO executions VALUES (?, ?, ?, ?, ?)",
                (request_id, usage.prompt_tokens, doc, response_hash(text).hex(), int(time.time())),
            )

    def _settle(self, request_id: str, start_tx: str, usage: Usage, text: str) -> None:
        """Once the Start is in a block and names this node, report the completion on chain."""
        try:
            self.client.wait_for_tx(start_tx, START_WAIT_SECONDS)
            record = self.client.query(inference.REQUEST, bytes.fromhex(request_id))
            request = None if record is None else record.request
            if request is None or request.executor != self.address:
                log.warning("request %s is not open for this executor on chain: %s", request_id, record)
                return
            if request.prompt_tokens != usage.prompt_tokens:
                log.warning(
                    "request %s: the transfer agent declared %d prompt tokens, the model read %d; "
                    "not settling (the developer is refunded at expiry)",
                    request_id,
                    request.prompt_tokens,
                    usage.prompt_tokens,
                )
                return
            finish = MsgFinishRequest(
                request_id=bytes.fromhex(request_id),
                completion_tokens=usage.completion_tokens,
                response_hash=response_hash(text),
            )
            self.sender.send([finish])
        except ClientError as e:
            log.warning("could not settle request %s: %s", request_id, e)


def settlement_thread_name(request_id: str) -> str:
    """The name of the thread that settles a request (hex id), so a thread dump or a test can find and join it."""
    return f"settle-{request_id}"


def response_hash(text: str) -> bytes:
    """The response hash the chain records: SHA-256 of the completion text."""
    return hashlib.sha256(text.encode()).digest()
