"""The executor: runs a forwarded request on the local backend, keeps its logprobs, and reports it on chain.

It serves only paid, committed work. A forward carries the developer's exact body, signed by
the transfer agent over a domain tag, the chain id, this executor's address, the request id and
the body's hash. Before it generates anything the executor checks, against the request's
committed `inference/Start`: the request is open and names this node as executor and the
signer as transfer agent; the body hashes to the prompt hash the developer signed (or the API
key's gateway declared); its model and `max_tokens` are the Start's; the model reads exactly the
Start's prompt token count; and the request id was not served before. So nobody can make it
work for a request nobody paid for, replay a forward, or make it settle a developer's request
at a count the developer did not sign. It samples with the seed the request id and the developer's own
seed give (`racenet.ml.sampling`), so a validator can replay which token each position had to be. It streams
events back as JSON lines at once, then, off the user's path, sends `inference/Finish` with the completion's
token count and response hash. Per-token logprobs (with top-k alternatives), the body and the answer are kept in
`<state>/executions.db`; a weight holder fetches them to check the answer (`answer_for`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from racenet.chain.codec import encode
from racenet.chain.modules import inference, race
from racenet.chain.modules.finetune import parse_fine_tuned
from racenet.chain.modules.inference import MsgFinishRequest, Request
from racenet.crypto.address import address_from_pubkey
from racenet.crypto.keys import PrivateKey, PublicKey
from racenet.ml.backend import Backend, FinishEvent, GenerationEvent, GenerationRequest, TokenEvent, TopLogprob, Usage
from racenet.ml.sampling import request_sampling_seed
from racenet.node.client import ChainClient, ClientError
from racenet.node.compute import ComputeThread
from racenet.node.openai_format import ApiError, parse_request
from racenet.node.sender import TxSender

log = logging.getLogger(__name__)

FORWARD_DOMAIN = b"racenet/forward/v1\x00"
ANSWER_DOMAIN = b"racenet/answer-fetch/v1\x00"
EXPIRY_MARGIN_BLOCKS = 3
"""An executor refuses a request that expires within this many blocks: its Finish would come too late."""


@dataclass(frozen=True)
class Forward:
    """What a transfer agent signs to forward one request body to one executor."""

    chain_id: str
    request_id: bytes
    executor: bytes
    body_hash: bytes


def forward_sign_bytes(forward: Forward) -> bytes:
    """The bytes a transfer agent signs for a forward: domain tag, then the canonical encoding."""
    return FORWARD_DOMAIN + encode(forward)


def forward_headers(key: PrivateKey, chain_id: str, request_id: bytes, executor: bytes, body: bytes) -> dict[str, str]:
    """The headers of a forward of `body` to `executor`, signed with the transfer agent's node key."""
    forward = Forward(chain_id, request_id, executor, hashlib.sha256(body).digest())
    return {
        "content-type": "application/json",
        "x-racenet-request-id": request_id.hex(),
        "x-racenet-public-key": key.public_key.raw.hex(),
        "x-racenet-signature": key.sign(forward_sign_bytes(forward)).hex(),
    }


@dataclass(frozen=True)
class AnswerFetch:
    """What a validator signs to fetch one answer it checks from the executor that gave it."""

    chain_id: str
    request_id: bytes
    executor: bytes


def answer_fetch_headers(key: PrivateKey, chain_id: str, request_id: bytes, executor: bytes) -> dict[str, str]:
    """The headers of a validator's fetch of an answer, signed with its node key."""
    signed = ANSWER_DOMAIN + encode(AnswerFetch(chain_id, request_id, executor))
    return {"x-racenet-public-key": key.public_key.raw.hex(), "x-racenet-signature": key.sign(signed).hex()}


@dataclass(frozen=True)
class Job:
    """A forward that passed every check: the request id, its on-chain record, the body and what to generate."""

    request_id: bytes
    record: Request
    request: GenerationRequest
    body: bytes


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
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers (request_id TEXT PRIMARY KEY, body BLOB NOT NULL, answer TEXT NOT NULL)"
        )
        self.db_lock = threading.Lock()
        self.active = 0
        self.active_lock = threading.Lock()
        self.claimed: set[bytes] = set()

    def busy(self) -> bool:
        """Whether a user request is running (the Race miner yields while it is)."""
        return self.active > 0

    def authorize(self, raw: bytes, headers: Mapping[str, str]) -> Job:
        """Check a forward against the chain before any work; ApiError (nothing generated) if it fails."""
        request_id, signer = self._forward_signer(raw, headers)
        job = self._check_on_chain(raw, request_id, signer)
        with self.active_lock:
            if request_id in self.claimed or self.executed(request_id):
                raise ApiError(409, "this request was already served", code="already_served")
            self.claimed.add(request_id)
        return job

    def _forward_signer(self, raw: bytes, headers: Mapping[str, str]) -> tuple[bytes, bytes]:
        """(request id, transfer agent address) of a forward signed for this executor and chain."""
        try:
            request_id = bytes.fromhex(headers.get("x-racenet-request-id", ""))
            pub = bytes.fromhex(headers.get("x-racenet-public-key", ""))
            signature = bytes.fromhex(headers.get("x-racenet-signature", ""))
        except ValueError:
            request_id = pub = signature = b""
        chain_id = self.sender.chain_id or self.client.chain_id()
        forward = Forward(chain_id, request_id, self.address, hashlib.sha256(raw).digest())
        if len(request_id) != 32 or len(pub) != 32 or not PublicKey(pub).verify(forward_sign_bytes(forward), signature):
            raise ApiError(401, "the forward is not signed for this executor", "authentication_error")
        return request_id, address_from_pubkey(pub)

    def _check_on_chain(self, raw: bytes, request_id: bytes, signer: bytes) -> Job:
        """The committed Start must name this executor and the signer, and match the body exactly."""
        record = self.client.query(inference.REQUEST, request_id)
        request = None if record is None else record.request
        if request is None or request.executor != self.address or request.transfer_agent != signer:
            raise ApiError(403, "no committed request routes this forward to this executor", "permission_error")
        if self.client.height() + EXPIRY_MARGIN_BLOCKS >= request.expiry_height:
            raise ApiError(409, "the request expires before an answer could be settled", code="too_late")
        if hashlib.sha256(raw).digest() != request.prompt_hash:
            raise ApiError(409, "the forwarded body is not the one the request was opened for", code="body_mismatch")
        _, generation, _ = parse_request(raw)
        if (base_model(generation.model), generation.max_tokens) != (request.model, request.max_tokens):
            raise ApiError(409, "the forwarded model or max_tokens differ from the request's", code="body_mismatch")
        if generation.temperature > 0 and not self.backend.replays_sampling:
            message = "this executor's engine cannot draw the seeded samples validators replay; ask the next executor"
            raise ApiError(409, message, code="sampling_not_replayable")
        prompt_tokens = len(self.backend.tokenize_chat(generation.messages, model=generation.model))
        if prompt_tokens != request.prompt_tokens:
            raise ApiError(
                409,
                f"the request declares {request.prompt_tokens} prompt tokens; the model reads {prompt_tokens}",
                code="prompt_tokens_mismatch",
            )
        seeded = dataclasses.replace(generation, seed=request_sampling_seed(request_id, generation.seed))
        return Job(request_id, request, seeded, raw)

    def executed(self, request_id: bytes) -> bool:
        """Whether this executor generated an answer for the request (it serves each once)."""
        with self.db_lock:
            row = self.db.execute("SELECT 1 FROM executions WHERE request_id = ?", (request_id.hex(),)).fetchone()
        return row is not None

    def execute(self, job: Job) -> Iterator[bytes]:
        """Generate an authorized request, yielding JSON lines; then settle it in the background.

        The model runs on the node's compute thread (see `racenet.node.compute`).
        """
        lines: queue.Queue[bytes | BaseException | None] = queue.Queue()
        self.compute.submit(self._generate, job, lines)
        while (line := lines.get()) is not None:
            if isinstance(line, BaseException):
                raise line
            yield line

    def _generate(self, job: Job, lines: queue.Queue[Any]) -> None:
        """Run one generation on the compute thread, passing each event on as a JSON line."""
        request_id = job.request_id.hex()
        tokens: list[TokenEvent] = []
        text: list[str] = []
        with self.active_lock:
            self.active += 1
        try:
            for event in self.backend.generate(job.request):
                text.append(event.text)
                if isinstance(event, TokenEvent):
                    tokens.append(event)
                else:
                    self._record(job, event, tokens, "".join(text))
                    threading.Thread(
                        target=self._settle,
                        args=(job, event.usage, "".join(text)),
                        name=settlement_thread_name(request_id),
                        daemon=True,
                    ).start()
                lines.put(json.dumps(event_json(event)).encode() + b"\n")
        except BaseException as e:
            lines.put(e)
        finally:
            with self.active_lock:
                self.active -= 1
                self.claimed.discard(job.request_id)
            lines.put(None)

    def _record(self, job: Job, finish: FinishEvent, tokens: list[TokenEvent], text: str) -> None:
        """Keep the logprobs this executor reported, and the body and answer a validator's check needs."""
        request_id = job.request_id.hex()
        doc = json.dumps([event_json(t) for t in tokens])
        answer = {
            "token_ids": [t.token_id for t in tokens],
            "logprobs": [t.logprob for t in tokens],
            "finish_reason": finish.finish_reason,
            "text": text,
        }
        with self.db_lock:
            self.db.execute(
                "INSERT OR IGNORE INTO executions VALUES (?, ?, ?, ?, ?)",
                (request_id, finish.usage.prompt_tokens, doc, response_hash(text).hex(), int(time.time())),
            )
            self.db.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?)", (request_id, job.body, json.dumps(answer))
            )

    def answer_for(self, request_id_hex: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """The body and answer of a request this executor served, for a weight holder that signed the fetch."""
        try:
            request_id = bytes.fromhex(request_id_hex)
            pub = bytes.fromhex(headers.get("x-racenet-public-key", ""))
            signature = bytes.fromhex(headers.get("x-racenet-signature", ""))
        except ValueError:
            request_id = pub = signature = b""
        chain_id = self.sender.chain_id or self.client.chain_id()
        signed = ANSWER_DOMAIN + encode(AnswerFetch(chain_id, request_id, self.address))
        if len(request_id) != 32 or len(pub) != 32 or not PublicKey(pub).verify(signed, signature):
            raise ApiError(401, "the fetch is not signed for this executor", "authentication_error")
        requester = address_from_pubkey(pub)
        nodes = self.client.query(race.NODES).nodes
        if not any(n.address == requester and n.weight > 0 for n in nodes):
            raise ApiError(403, "only weight holders check answers", "permission_error")
        with self.db_lock:
            row = self.db.execute(
                "SELECT body, answer FROM answers WHERE request_id = ?", (request_id.hex(),)
            ).fetchone()
        if row is None:
            raise ApiError(404, "this executor has no answer to that request", code="not_found")
        return {"body": base64.b64encode(row[0]).decode(), "answer": json.loads(row[1])}

    def _settle(self, job: Job, usage: Usage, text: str) -> None:
        """Report the completion of a committed request on chain."""
        finish = MsgFinishRequest(
            request_id=job.request_id,
            completion_tokens=usage.completion_tokens,
            response_hash=response_hash(text),
        )
        try:
            self.sender.send([finish])
        except ClientError as e:
            log.warning("could not settle request %s: %s", job.request_id.hex(), e)


def base_model(model: str) -> str:
    """The model a request is opened on chain for: a fine-tuned model's base (paid at its price), else itself."""
    parsed = parse_fine_tuned(model)
    return model if parsed is None else parsed[0]


def settlement_thread_name(request_id: str) -> str:
    """The name of the thread that settles a request (hex id), so a thread dump or a test can find and join it."""
    return f"settle-{request_id}"


def response_hash(text: str) -> bytes:
    """The response hash the chain records: SHA-256 of the completion text."""
    return hashlib.sha256(text.encode()).digest()
