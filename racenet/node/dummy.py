"""Dummy tasks (whitepaper §6): synthetic requests, indistinguishable from user traffic, sent when traffic is low.

`TrafficProfile` holds chat requests as users send them (the shipped corpus `dummy_traffic.jsonl`; relayed
user requests are not learned from, which would leak fragments of them to executors); `DummyGenerator` draws
new requests from it with a private seed: a request of the profile gives the message structure, the system
prompt (apps share theirs verbatim), the sampling parameters, and the start and length of each message; a
`Splicer` then recombines the template's message with others of the profile at shared words, so a draw never
repeats a run of `MAX_SHARED_RUN` words of one message it learned from (an executor that saw the original cannot
recognise it), and every learned phrase turns up about as often as it did in the traffic.

`DummyIssuer` is the loop a validator's daemon runs (docs/dummy-tasks.md): when the last blocks hold few
`inference/Start`s it signs a drawn request with an issuer account (never the node's own) and sends it to
another node's API like any developer; it commits to each request id ahead of use (`dummy/Commit`) and, once the
request's cycle has settled and its issuer account is retired, claims the cost back from the dummy pool
(`dummy/Claim`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from racenet.chain.codec import DecodeError, decode
from racenet.chain.errors import Code
from racenet.chain.modules import dummy, inference, pricing, race, verification
from racenet.chain.modules.beacon import BEACON_TX_PREFIX
from racenet.chain.modules.inference import MsgStartRequest
from racenet.chain.tx import SignedTx
from racenet.crypto.keys import PrivateKey
from racenet.node.client import ChainClient, ClientError, TxRejected
from racenet.node.request_signing import signed_headers
from racenet.node.sender import TxSender

log = logging.getLogger(__name__)

CORPUS = Path(__file__).with_name("dummy_traffic.jsonl")
MAX_SHARED_RUN = 6
"""A drawn message never shares this many consecutive words with a message it learned from."""
PARAMETERS = ("max_tokens", "temperature", "top_p", "seed", "stop")
"""The sampling parameters a drawn request copies from its template request."""
Words = tuple[str, ...]


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    """The chat requests of a JSON-lines file (the shipped corpus by default)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def words(text: str) -> Words:
    """A message's words as users typed them (case and punctuation kept; split on spaces)."""
    return tuple(w for w in text.split(" ") if w)


class Splicer:
    """Recombines the messages of one role: it follows a message and, at a word another message shares, jumps into
    that message and goes on from there; it must jump before it has followed one message for MAX_SHARED_RUN words.
    It jumps where the words ahead were drawn least so far (and the result ends near the wanted length), so over
    many draws every learned phrase appears about as often as in the traffic, never a rare one over and over."""

    def __init__(self, texts: Sequence[Words], switch_chance: float = 0.1) -> None:
        self.texts = [t for t in texts if t]
        self.switch_chance = switch_chance
        self.index = {t: n for n, t in reversed(list(enumerate(self.texts)))}
        self.at: dict[str, list[tuple[int, int]]] = {}
        for n, text in enumerate(self.texts):
            for i, word in enumerate(text):
                self.at.setdefault(word, []).append((n, i))
        self.seen = {t[i : i + MAX_SHARED_RUN] for t in self.texts for i in range(len(t) - MAX_SHARED_RUN + 1)}
        self.coverage = [[0] * len(t) for t in self.texts]

    def splice(self, rng: random.Random, start: Words) -> list[tuple[int, int]] | None:
        """A path of (message, position) from the learned message `start` on, jumping at shared words, to end about
        as long as it; None if it got stuck (no shared word in a run) or ran long."""
        if start not in self.index:
            return None
        target, limit = len(start), 3 * len(start) + 2
        n, pos, run_start = self.index[start], 0, 0
        path: list[tuple[int, int]] = []
        while pos < len(self.texts[n]):
            path.append((n, pos))
            if len(path) > limit:
                return None
            forced = len(path) - run_start >= MAX_SHARED_RUN - 1
            if forced or rng.random() < self.switch_chance:
                here = len(path) - 1
                back = here if here > run_start and self._jumps(path[here]) else None
                if back is None and forced:  # jump from the last shared word of this run instead
                    back = next((k for k in range(here - 1, run_start, -1) if self._jumps(path[k])), None)
                    if back is None:
                        return None
                if back is not None:
                    del path[back + 1 :]
                    jumps = self._jumps(path[back])
                    best = min(self._jump_score(m, i, len(path), target) for m, i in jumps)
                    n, pos = rng.choice([(m, i) for m, i in jumps if self._jump_score(m, i, len(path), target) == best])
                    run_start = back
            pos += 1
        return path

    def _jumps(self, at: tuple[int, int]) -> list[tuple[int, int]]:
        """Where another message has the word at `at`."""
        text = self.texts[at[0]]
        return [(m, i) for m, i in self.at.get(text[at[1]], []) if self.texts[m] != text]

    def _jump_score(self, m: int, i: int, emitted: int, target: int) -> tuple[int, int]:
        """Lower is better: a jump that ends near the target length, into words drawn least so far."""
        remaining = len(self.texts[m]) - i - 1
        return max(0, abs(emitted + remaining - target) - 2), self.coverage[m][min(i + 1, len(self.texts[m]) - 1)]

    def words(self, path: list[tuple[int, int]]) -> Words:
        """The words a path spells."""
        return tuple(self.texts[n][i] for n, i in path)

    def cover(self, path: list[tuple[int, int]]) -> None:
        """Count a drawn path's words as used."""
        for n, i in path:
            self.coverage[n][i] += 1

    def copies(self, text: Words) -> bool:
        """Whether `text` repeats a run of MAX_SHARED_RUN words of a learned message."""
        return any(text[i : i + MAX_SHARED_RUN] in self.seen for i in range(len(text) - MAX_SHARED_RUN + 1))


@dataclass
class TrafficProfile:
    """The user requests a generator imitates."""

    requests: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def shipped(cls) -> TrafficProfile:
        """The profile of the shipped corpus."""
        return cls(load_corpus())


class DummyGenerator:
    """Draws dummy chat requests from a profile with a private seed (an executor cannot predict the draws)."""

    def __init__(self, profile: TrafficProfile, seed: bytes | None = None, attempts: int = 12) -> None:
        self.requests = list(profile.requests)
        self.rng = random.Random(seed if seed is not None else os.urandom(32))
        self.attempts = attempts
        self.queue: list[dict[str, Any]] = []
        self.splicers = {
            role: Splicer([words(str(m["content"])) for r in self.requests for m in r["messages"] if m["role"] == role])
            for role in ("user", "assistant")
        }

    def draw(self) -> dict[str, Any]:
        """One chat request body: a template's structure, system prompt and parameters, with new words."""
        if not self.queue:  # each template once per round: a rare phrase is no likelier in dummies than in traffic
            self.queue = self.rng.sample(self.requests, len(self.requests))
        template = self.queue.pop()
        messages = [
            dict(m) if m["role"] not in self.splicers else {"role": m["role"], "content": self.text(m)}
            for m in template["messages"]
        ]
        params = {k: template[k] for k in PARAMETERS if k in template}
        return {"model": template["model"], "messages": messages, **params}

    def text(self, message: dict[str, Any]) -> str:
        """New words for one message: the template's message recombined with others, about as long as it."""
        splicer = self.splicers[message["role"]]
        target = words(str(message["content"]))
        best: list[tuple[int, int]] | None = None
        for _ in range(self.attempts):
            path = splicer.splice(self.rng, target)
            if path is None or splicer.copies(splicer.words(path)):
                continue
            if best is None or abs(len(path) - len(target)) < abs(len(best) - len(target)):
                best = path
            if abs(len(path) - len(target)) <= max(2, len(target) // 4):
                break
        if best is None:
            return " ".join(target[: MAX_SHARED_RUN - 1])
        splicer.cover(best)
        return " ".join(splicer.words(best))


def dummy_secret(beacon_secret: int) -> bytes:
    """A validator's dummy secret, derived from its beacon secret: its issuer accounts and nothing else come from it."""
    return hashlib.sha256(b"racenet/dummy/secret/v1\x00" + beacon_secret.to_bytes(32, "big")).digest()


def issuer_key(secret: bytes, index: int) -> PrivateKey:
    """The `index`-th issuer account of a node: derived from its dummy secret, linked to nothing on chain."""
    return PrivateKey(hashlib.sha256(b"racenet/dummy/issuer/v1\x00" + secret + index.to_bytes(8, "big")).digest())


def count_starts(block: dict[str, Any]) -> int:
    """The `inference/Start` messages in a CometBFT `/block` answer (what an executor sees of user traffic)."""
    count = 0
    for raw in (base64.b64decode(t) for t in block["block"]["data"]["txs"] or []):
        if raw.startswith(BEACON_TX_PREFIX):
            continue
        try:
            count += sum(m.type == MsgStartRequest.TYPE for m in decode(SignedTx, raw).body.msgs)
        except DecodeError:
            continue
    return count


@dataclass(frozen=True)
class IssuerConfig:
    """When and how much a validator issues.

    A dummy request goes out when the last `window_blocks` blocks hold fewer than `min_starts` Starts (then with
    probability `send_chance` per step, so dummies do not tick like a clock). `ready_ids` request ids are kept
    committed ahead; an id is used `ready_blocks` after its commitment. Issuer account i pays in cycles
    [i·rotate_cycles, (i+1)·rotate_cycles); its requests are claimed once it is retired and their cycles settled.
    """

    window_blocks: int = 20
    min_starts: int = 2
    send_chance: float = 0.3
    ready_ids: int = 8
    ready_blocks: int = 3
    auth_blocks: int = 100
    rotate_cycles: int = 2
    timeout: float = 120.0


@dataclass
class Issued:
    """A committed request id (and, once sent, which issuer account paid for it)."""

    request_id: str
    salt: str
    committed: int
    issuer: int = -1


class DummyIssuer:
    """A validator's dummy-request loop: `step()` once, or `run(stop)` every `interval` seconds."""

    def __init__(
        self,
        client: ChainClient,
        sender: TxSender,
        generator: DummyGenerator,
        secret: bytes,
        journal: Path,
        count_tokens: Callable[[bytes], int],
        config: IssuerConfig = IssuerConfig(),
        post: Callable[..., httpx.Response] = httpx.post,
    ) -> None:
        self.client = client
        self.sender = sender
        self.generator = generator
        self.secret = secret
        self.journal = journal
        self.count_tokens = count_tokens
        self.config = config
        self.post = post
        self.rng = random.Random(os.urandom(32))
        self.starts: dict[int, int] = {}
        self.issued: list[Issued] = [Issued(**e) for e in json.loads(journal.read_text())] if journal.exists() else []

    def _save(self) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        self.journal.write_text(json.dumps([e.__dict__ for e in self.issued]))

    def recent_starts(self, height: int) -> int:
        """Starts in the last `window_blocks` blocks (each block fetched once)."""
        first = max(1, height - self.config.window_blocks + 1)
        for h in range(first, height + 1):
            if h not in self.starts:
                self.starts[h] = count_starts(self.client.call("block", height=str(h)))
        self.starts = {h: n for h, n in self.starts.items() if h >= first}
        return sum(self.starts.values())

    def step(self) -> None:
        """Commit ids ahead, send a dummy if traffic is low, claim what has settled."""
        height = self.client.height()
        cycle = self.client.query(race.CYCLE).cycle
        self.commit_ahead(height)
        if self.recent_starts(height) < self.config.min_starts and self.rng.random() < self.config.send_chance:
            self.send_one(height, cycle // self.config.rotate_cycles)
        self.claim_settled(cycle // self.config.rotate_cycles)

    def usable(self, entry: Issued, height: int) -> bool:
        """Whether an unused id may pay for a dummy now: committed long enough ago to precede the Start's routing
        round, and young enough that its commitment outlives the request's settlement and claim."""
        lifetime = self.client.query(dummy.PARAMS).commitment_blocks
        return entry.committed + self.config.ready_blocks <= height < entry.committed + lifetime // 2

    def commit_ahead(self, height: int) -> None:
        """Keep `ready_ids` unused, usable request ids committed on chain (forget unused ones too old to claim)."""
        lifetime = self.client.query(dummy.PARAMS).commitment_blocks
        stale = [e for e in self.issued if e.issuer < 0 and height >= e.committed + lifetime // 2]
        if stale:
            self.issued = [e for e in self.issued if e not in stale]
            self._save()
        unused = sum(e.issuer < 0 for e in self.issued)
        if unused >= self.config.ready_ids:
            return
        chain_id, me = self.client.chain_id(), self.sender.key.public_key.address
        fresh = [Issued(os.urandom(32).hex(), os.urandom(32).hex(), height) for _ in range(self.config.ready_ids)]
        values = tuple(
            dummy.commitment(chain_id, me, bytes.fromhex(e.request_id), bytes.fromhex(e.salt)) for e in fresh
        )
        self.sender.send([dummy.MsgCommit(values)])
        self.issued += fresh
        self._save()

    def send_one(self, height: int, issuer: int) -> None:
        """Sign a drawn request with the current issuer account and send it to another node's API."""
        entry = next((e for e in self.issued if e.issuer < 0 and self.usable(e, height)), None)
        if entry is None:
            return
        body_doc = self.generator.draw()
        me = self.sender.key.public_key.address
        nodes = [s for s in self.client.query(inference.SERVERS, body_doc["model"]).servers if s.address != me]
        if not nodes:
            return
        node = self.rng.choice(nodes)
        body = json.dumps(body_doc).encode()
        headers = signed_headers(
            issuer_key(self.secret, issuer),
            self.client.chain_id(),
            body,
            transfer_agent=node.address,
            prompt_tokens=self.count_tokens(body),
            expiry_height=height + self.config.auth_blocks,
            max_price_per_token=next(
                m.price_per_token for m in self.client.query(pricing.MODELS).models if m.id == body_doc["model"]
            ),
            request_id=bytes.fromhex(entry.request_id),
        )
        entry.issuer = issuer
        self._save()
        try:
            self.post(
                f"{node.endpoint}/v1/chat/completions", content=body, headers=headers, timeout=self.config.timeout
            )
        except httpx.HTTPError as e:
            log.info("dummy request to %s failed: %s", node.endpoint, e)

    def claim_settled(self, current_issuer: int) -> None:
        """Claim the requests of retired issuer accounts whose tasks have settled; forget those never finished."""
        me, chain_id = self.sender.key.public_key.address, self.client.chain_id()
        for entry in [e for e in self.issued if 0 <= e.issuer < current_issuer]:
            request_id = bytes.fromhex(entry.request_id)
            info = self.client.query(inference.REQUEST, request_id)
            receipt = None if info is None else info.receipt
            open_request = info is not None and receipt is None
            if open_request or self.client.query(verification.TASK, request_id) is not None:
                continue  # still open, or its task not settled yet
            if receipt is not None and receipt.status == inference.ReceiptStatus.FINISHED:
                key = issuer_key(self.secret, entry.issuer)
                claim = dummy.MsgClaim(
                    request_id=request_id,
                    salt=bytes.fromhex(entry.salt),
                    developer_key=key.public_key.raw,
                    developer_signature=key.sign(dummy.claim_sign_bytes(chain_id, request_id, me)),
                )
                try:
                    self.sender.send([claim])
                except TxRejected as e:
                    over_cap = e.code == Code.OUT_OF_RANGE and "cap" in e.log
                    if over_cap and receipt.cost <= self.client.query(dummy.CLAIMANT, me).cap:
                        log.info("dummy claim of %s deferred to the next cycle: %s", entry.request_id, e)
                        continue
                    log.warning("dummy claim of %s refused for good: %s", entry.request_id, e)
            self.issued.remove(entry)
            self._save()

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Step every `interval` seconds until `stop` is set; a failed step is logged and retried."""
        while not stop.wait(interval):
            try:
                self.step()
            except (ClientError, httpx.HTTPError, ValueError) as e:
                log.warning("dummy issuer step failed: %s", e)
