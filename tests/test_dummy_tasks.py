"""Dummy tasks (whitepaper §6): the generator's draws cannot be told from user requests by what an executor sees,
and the `dummy` chain module reimburses exactly the committed, settled, consented dummy requests of weight holders
within their caps. Every defence of the module has a test that fails without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from racenet.chain.app import App
from racenet.chain.errors import Code
from racenet.chain.modules import dummy, race
from racenet.chain.modules.bank import Balance, Escrow
from racenet.chain.modules.inference import MsgFinishRequest, MsgStartRequest
from racenet.chain.scalars import Address
from racenet.crypto.address import address_from_pubkey
from racenet.crypto.keys import PrivateKey
from racenet.ml.backend import DEFAULT_MAX_TOKENS
from racenet.node.dummy import (
    MAX_SHARED_RUN,
    DummyGenerator,
    DummyIssuer,
    IssuerConfig,
    TrafficProfile,
    issuer_key,
    load_corpus,
    words,
)
from racenet.node.request_signing import SIGNED_HEADERS
from racenet.node.sender import TxSender
from tests.chain import CHAIN_ID, FEE, Chain
from tests.nodefake import FakeChain
from tests.test_inference_chain import DEV
from tests.test_verification_chain import COST, NODES, WEIGHTS, VerificationChain, genesis

BUCKETS = 1 << 12
DENSE = 10


def features(body: dict[str, Any]) -> list[tuple[int, float]]:
    """What an executor sees of a request: hashed word unigrams and bigrams per role, lengths, message structure
    and sampling parameters, as sparse (index, value) pairs."""
    found: Counter[int] = Counter()
    for m in body["messages"]:
        text = words(str(m["content"]).lower())
        for gram in [*text, *(f"{a} {b}" for a, b in itertools.pairwise(text))]:
            found[int.from_bytes(hashlib.sha256(f"{m['role']}:{gram}".encode()).digest()[:4], "big") % BUCKETS] += 1
    messages = body["messages"]
    dense = [
        len(messages),
        sum(m["role"] == "system" for m in messages),
        sum(m["role"] == "assistant" for m in messages),
        sum(len(words(str(m["content"]))) for m in messages) / 20,
        sum(len(str(m["content"])) for m in messages) / 100,
        float(body.get("max_tokens", 0)) / 512,
        float(body.get("temperature", -1)),
        float(body.get("top_p", -1)),
        float("seed" in body),
        float("stop" in body),
    ]
    return [*((BUCKETS + i, float(v)) for i, v in enumerate(dense)), *((k, float(v)) for k, v in found.items())]


def matrix(bodies: list[dict[str, Any]]) -> np.ndarray:
    x = np.zeros((len(bodies), BUCKETS + DENSE))
    for row, body in enumerate(bodies):
        for col, value in features(body):
            x[row, col] += value
    return x


def logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 400, rate: float = 0.5) -> np.ndarray:
    """Plain L2-regularized logistic regression by gradient descent (bias in the last column)."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= rate * (x.T @ (p - y) / len(y) + l2 * w)
    return w


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def cross_validated_auc(real: list[dict[str, Any]], fake: list[dict[str, Any]], folds: int = 5) -> float:
    """AUC of the classifier on held-out folds (trained on the others), over all folds' scores."""
    x = matrix(real + fake)
    x[:, BUCKETS:] = (x[:, BUCKETS:] - x[:, BUCKETS:].mean(0)) / (x[:, BUCKETS:].std(0) + 1e-9)
    x = x[:, x.any(axis=0)]  # buckets no request uses carry nothing (and cost time)
    y = np.array([0] * len(real) + [1] * len(fake), dtype=float)
    order = np.random.default_rng(0).permutation(len(y))
    scores = np.zeros(len(y))
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        w = logistic(x[train], y[train])
        scores[test] = np.hstack([x[test], np.ones((len(test), 1))]) @ w
    return auc(scores, y)


def quarters() -> list[tuple[TrafficProfile, list[dict[str, Any]]]]:
    """Four splits of the corpus: three quarters are what the issuing node learned from, the fourth is held-out user
    traffic (each prompt is held out once)."""
    corpus = load_corpus()
    random.Random(7).shuffle(corpus)
    return [(TrafficProfile([c for i, c in enumerate(corpus) if i % 4 != q]), corpus[q::4]) for q in range(4)]


def mean_auc(draw: Callable[[TrafficProfile, int], list[dict[str, Any]]]) -> tuple[float, list[float]]:
    """The classifier's cross-validated AUC on each quarter (held-out users vs as many draws), and their mean."""
    aucs = [cross_validated_auc(held_out, draw(profile, q)) for q, (profile, held_out) in enumerate(quarters())]
    return float(np.mean(aucs)), aucs


def test_the_corpus_is_varied_user_traffic() -> None:
    corpus = load_corpus()
    assert len(corpus) >= 300
    assert len({c["messages"][-1]["content"] for c in corpus}) == len(corpus)
    assert {len(c["messages"]) for c in corpus} >= {1, 2, 3}
    assert len({c.get("temperature") for c in corpus}) >= 5 and len({c.get("max_tokens") for c in corpus}) >= 8


def test_draws_recombine_and_never_replay_a_learned_prompt() -> None:
    profile, _ = quarters()[0]
    learned = [words(str(m["content"])) for r in profile.requests for m in r["messages"] if m["role"] != "system"]
    runs = {t[i : i + MAX_SHARED_RUN] for t in learned for i in range(len(t) - MAX_SHARED_RUN + 1)}
    generator = DummyGenerator(profile, b"other")
    draws = [generator.draw() for _ in range(2 * len(profile.requests))]
    for body in draws:
        for m in body["messages"]:
            if m["role"] != "system":
                text = words(m["content"])
                assert not any(text[i : i + MAX_SHARED_RUN] in runs for i in range(len(text) - MAX_SHARED_RUN + 1))
    assert sum(tuple(words(d["messages"][-1]["content"])) in set(learned) for d in draws) < len(draws) // 4
    same = [DummyGenerator(profile, b"seed").draw() for _ in range(2)]
    assert same[0] == same[1] and DummyGenerator(profile, b"other").draw() != same[0]  # the seed is the secret


def test_a_classifier_cannot_tell_dummy_requests_from_user_requests() -> None:
    def draw(profile: TrafficProfile, q: int) -> list[dict[str, Any]]:
        generator = DummyGenerator(profile, b"private issuer seed %d" % q)
        return [generator.draw() for _ in range(len(profile.requests) // 3)]

    measured, aucs = mean_auc(draw)
    print(f"dummy vs user AUC = {measured:.3f} (quarters: {', '.join(f'{a:.3f}' for a in aucs)}; 5-fold each)")
    assert measured <= 0.60


def test_the_classifier_does_catch_a_naive_generator() -> None:
    """Without the profile's phrasing (uniform words, fixed parameters) the same classifier separates dummies."""

    def draw(profile: TrafficProfile, q: int) -> list[dict[str, Any]]:
        vocabulary = sorted({w for r in profile.requests for m in r["messages"] for w in words(m["content"])})
        rng = random.Random(q)
        return [
            {
                "model": "SmolLM2-135M-Instruct",
                "messages": [{"role": "user", "content": " ".join(rng.choices(vocabulary, k=rng.randint(3, 20)))}],
                "max_tokens": 128,
            }
            for _ in range(len(profile.requests) // 3)
        ]

    assert mean_auc(draw)[0] > 0.9


# The chain module: commitments, settled claims, consent, caps and each attack.


POOL = 100 * COST
BUDGET = sum(WEIGHTS) * COST // WEIGHTS[3]
"""The heaviest node (25 of 70) may be reimbursed exactly one request per cycle; the lightest less than one."""


def dummy_chain(tmp_path: Path) -> VerificationChain:
    base = genesis()
    state = base.app_state
    bank = dataclasses.replace(state.bank, escrows=(Escrow(dummy.NAME, dummy.POOL_ID, POOL),))
    params = dummy.DummyGenesis(params=dummy.Params(cycle_budget=BUDGET))  # type: ignore[arg-type]
    c = Chain.start(tmp_path, dataclasses.replace(base, app_state=dataclasses.replace(state, bank=bank, dummy=params)))
    chain = VerificationChain(c.app, c.driver)
    chain.until_beacon()
    return chain


def pool(app: App) -> int:
    return app.bank.keeper.escrow_balance(app.read_context(), dummy.NAME, dummy.POOL_ID)


def claim(request_id: bytes, salt: bytes, claimant: PrivateKey, developer: PrivateKey = DEV) -> dummy.MsgClaim:
    signed = dummy.claim_sign_bytes(CHAIN_ID, request_id, claimant.public_key.address)
    return dummy.MsgClaim(
        request_id=request_id,
        salt=salt,
        developer_key=developer.public_key.raw,
        developer_signature=developer.sign(signed),
    )


def request_id(n: int) -> bytes:
    return hashlib.sha256(f"request {n}".encode()).digest()


def test_committed_settled_dummy_requests_are_reimbursed_once_within_the_cap(tmp_path: Path) -> None:
    chain = dummy_chain(tmp_path)
    heavy, light = NODES[3], NODES[0]
    salts = {n: os.urandom(32) for n in range(1, 9)}
    victim, victim_salts = NODES[2], {n: os.urandom(32) for n in range(1, 7)}

    def commit(who: PrivateKey, ns: range, owner: PrivateKey | None = None) -> tuple[int, str]:
        """`who` commits to requests `ns` (copying the commitment values `owner` made, if given)."""
        made_by, salt = (owner, victim_salts) if owner else (who, salts)
        values = tuple(dummy.commitment(CHAIN_ID, made_by.public_key.address, request_id(n), salt[n]) for n in ns)
        return chain.run(who, dummy.MsgCommit(values))

    assert commit(DEV, range(1, 2))[0] == Code.UNAUTHORIZED  # only weight holders commit
    assert commit(heavy, range(1, 7)) == (0, "")
    assert commit(light, range(1, 2)) == (0, "")
    assert commit(victim, range(1, 7), owner=victim) == (0, "")
    assert commit(heavy, range(1, 7), owner=victim) == (0, "")  # heavy copies the victim's commitments
    chain.decided_block()
    chain.decided_block()
    served = dict(chain.serve_many(range(1, 8)))
    assert commit(heavy, range(7, 8)) == (0, "")  # after request 7 started: it must not count
    mine = [n for n in range(1, 7) if served[request_id(n)] == heavy.public_key.address]
    others = [n for n in range(1, 7) if served[request_id(n)] != heavy.public_key.address]
    assert mine and others, "the draw must route requests both to the claimant and to others; change the numbers"
    first = others[0]

    assert chain.run(heavy, claim(request_id(first), salts[first], heavy))[0] == Code.TOO_EARLY  # task unsettled
    chain.until_settled()
    chain.decided_block()
    before = pool(chain.app)

    # attacks, each refused
    assert chain.run(DEV, claim(request_id(first), salts[first], DEV))[0] == Code.UNAUTHORIZED
    assert chain.run(NODES[2], claim(request_id(first), salts[first], NODES[2]))[0] == Code.NOT_FOUND  # not its commit
    assert chain.run(heavy, claim(request_id(first), os.urandom(32), heavy))[0] == Code.NOT_FOUND  # wrong salt
    copied = claim(request_id(first), victim_salts[first], heavy)  # the victim's salt, once revealed
    assert chain.run(heavy, copied)[0] == Code.NOT_FOUND  # a copied commitment names its maker
    forged = dataclasses.replace(claim(request_id(first), salts[first], NODES[2]), request_id=request_id(first))
    assert chain.run(heavy, forged)[0] == Code.BAD_SIGNATURE  # the developer consented to another claimant
    assert chain.run(heavy, claim(request_id(first), salts[first], heavy, NODES[1]))[0] == Code.UNAUTHORIZED
    assert chain.run(heavy, claim(request_id(7), salts[7], heavy))[0] == Code.OUT_OF_RANGE  # committed after Start
    assert chain.run(heavy, claim(request_id(mine[0]), salts[mine[0]], heavy))[0] == Code.UNAUTHORIZED  # it executed
    assert chain.run(light, claim(request_id(1), salts[1], light))[0] == Code.OUT_OF_RANGE  # over its weight's cap
    assert pool(chain.app) == before

    # the honest claim, once
    heavy_before = chain.balance(heavy)
    assert chain.run(heavy, claim(request_id(first), salts[first], heavy)) == (0, "")
    assert pool(chain.app) == before - COST
    assert chain.balance(heavy) == heavy_before - FEE + COST
    assert chain.run(heavy, claim(request_id(first), salts[first], heavy))[0] == Code.ALREADY_DONE
    spent = chain.app.dummy.keeper.query_claimant(chain.app.read_context(), heavy.public_key.address)
    assert spent.cap == COST and spent.spent in (COST, 0)  # 0 only if the claim's cycle has just ended
    state = chain.app.export_genesis().dummy
    assert request_id(first) in {c.request_id for c in state.claimed}


def test_the_issuer_sends_through_another_node_from_an_unlinked_account_and_claims_after_settlement(
    tmp_path: Path,
) -> None:
    secret = b"validator dummy secret"
    base = genesis()
    state = base.app_state
    bank = dataclasses.replace(
        state.bank,
        balances=(*state.bank.balances, *(Balance(issuer_key(secret, i).public_key.address, 10**12) for i in range(4))),
        escrows=(Escrow(dummy.NAME, dummy.POOL_ID, POOL),),
    )
    me = NODES[3]
    serving = tuple(s for s in state.inference.servers if s.address != me.public_key.address)
    inference_state = dataclasses.replace(state.inference, servers=serving)  # it never executes its own dummies
    made = dataclasses.replace(base, app_state=dataclasses.replace(state, bank=bank, inference=inference_state))
    chain = FakeChain(tmp_path / "chain", made)
    chain.until_beacon()
    client = chain.client()
    endpoints = {f"https://node{i}.example.com": k for i, k in enumerate(NODES)}
    sent: list[tuple[PrivateKey, dict[str, str]]] = []

    def transfer_agent(url: str, *, content: bytes, headers: dict[str, str], timeout: float) -> httpx.Response:
        """The chosen node opens the request as its transfer agent would; the drawn executor finishes it."""
        agent = endpoints[url.removesuffix("/v1/chat/completions")]
        field = {k: headers[v] for k, v in SIGNED_HEADERS.items()}
        doc = json.loads(content)
        start = MsgStartRequest(
            request_id=bytes.fromhex(field["request_id"]),
            developer=address_from_pubkey(bytes.fromhex(field["public_key"])),
            model=doc["model"],
            prompt_tokens=int(field["prompt_tokens"]),
            max_tokens=int(doc.get("max_tokens", DEFAULT_MAX_TOKENS)),
            max_price_per_token=int(field["max_price_per_token"]),
            prompt_hash=hashlib.sha256(content).digest(),
            expiry_height=int(field["expiry_height"]),
            signer_key=bytes.fromhex(field["public_key"]),
            signature=bytes.fromhex(field["signature"]),
            api_key_id=b"",
        )
        TxSender(client, agent).send([start])
        chain.block()
        executor = chain.node.app.inference.keeper.requests.get(chain.node.app.read_context(), start.request_id)
        assert executor is not None
        finish = MsgFinishRequest(request_id=start.request_id, completion_tokens=5, response_hash=b"\x01" * 32)
        TxSender(client, next(k for k in NODES if k.public_key.address == executor.executor)).send([finish])
        sent.append((agent, headers))
        return httpx.Response(200, json={})

    profile = TrafficProfile([r for r in load_corpus() if r.get("max_tokens", 0) and r["max_tokens"] <= 512])
    loop = DummyIssuer(
        client,
        TxSender(client, me),
        DummyGenerator(profile, b"seed"),
        secret,
        tmp_path / "dummy.json",
        count_tokens=lambda body: 20,
        config=IssuerConfig(send_chance=1.0, rotate_cycles=1, min_starts=1),
        post=transfer_agent,
    )
    loop.step()  # commits ids ahead; none is old enough to use yet
    assert not sent and chain.node.app.dummy.keeper.open_count.get(chain.node.app.read_context(), me.public_key.address)
    chain.until(chain.height() + IssuerConfig().ready_blocks)
    loop.step()
    assert len(sent) == 1
    agent, headers = sent[0]
    assert agent != me  # never through itself
    cycle = client.query(race.CYCLE).cycle
    issuer = issuer_key(secret, cycle).public_key.raw.hex()
    assert headers[SIGNED_HEADERS["public_key"]] == issuer  # the cycle's issuer account, not the validator's
    loop.step()  # a Start in the window: traffic is not low, nothing more is sent
    assert len(sent) == 1

    request = bytes.fromhex(headers[SIGNED_HEADERS["request_id"]])
    app = chain.node.app
    while app.verification.keeper.tasks.get(app.read_context(), request) is not None:
        chain.block()
    before = pool(chain.node.app)
    loop.step()  # the issuer account is retired (a new cycle) and the task settled: claimed
    receipt = app.inference.keeper.receipts.get(app.read_context(), request)
    assert receipt is not None and pool(chain.node.app) == before - receipt.cost
    assert all(
        e.request_id != request.hex()
        for e in DummyIssuer(
            client, TxSender(client, me), DummyGenerator(profile), secret, tmp_path / "dummy.json", lambda b: 20
        ).issued
    )
    chain.close()


def test_commitments_are_bounded_unique_and_validated(tmp_path: Path) -> None:
    chain = dummy_chain(tmp_path)
    validator = NODES[1]

    def values(n: int, first: int = 0) -> tuple[bytes, ...]:
        return tuple(hashlib.sha256(b"c%d" % i).digest() for i in range(first, first + n))

    assert chain.run(DEV, dummy.MsgCommit(values(1)))[0] == Code.UNAUTHORIZED  # no weight, no commitments
    for bad in ((), values(dummy.types.MAX_BATCH + 1), (b"\x00" * 31,), (b"\x01" * 32, b"\x01" * 32)):
        assert chain.run(validator, dummy.MsgCommit(bad))[0] == Code.INVALID_MESSAGE
    assert chain.run(validator, dummy.MsgCommit(values(2))) == (0, "")
    assert chain.run(validator, dummy.MsgCommit(values(1)))[0] == Code.ALREADY_DONE
    for first in range(2, dummy.Params().max_commitments, dummy.types.MAX_BATCH):
        count = min(dummy.types.MAX_BATCH, dummy.Params().max_commitments - first)
        assert chain.run(validator, dummy.MsgCommit(values(count, first))) == (0, "")
    assert chain.run(validator, dummy.MsgCommit(values(1, 10_000)))[0] == Code.OUT_OF_RANGE  # state stays bounded
    short = dataclasses.replace(claim(request_id(1), b"\x00" * 32, validator), salt=b"\x00" * 31)
    assert chain.run(validator, short)[0] == Code.INVALID_MESSAGE
    assert chain.run(validator, claim(request_id(1), b"\x00" * 32, validator))[0] == Code.NOT_FOUND  # no such request


def test_commitments_expire_and_the_state_round_trips_through_genesis(tmp_path: Path) -> None:
    validator = Address(NODES[2].public_key.address)
    record = dummy.Commitment(height=1, round=1, expiry=5)
    state = dummy.DummyGenesis(
        params=dummy.Params(commitment_blocks=3),
        commitments=(dummy.types.CommitmentEntry(validator, b"\x02" * 32, record),),
        claimed=(dummy.types.ClaimedEntry(b"\x03" * 32, 7),),
    )
    base = genesis()
    chain = Chain.start(tmp_path, dataclasses.replace(base, app_state=dataclasses.replace(base.app_state, dummy=state)))
    assert chain.app.export_genesis().dummy == state
    keeper, read = chain.app.dummy.keeper, chain.app.read_context
    assert keeper.open_count.get(read(), validator) == 1
    while chain.app.height < 7:
        chain.decided_block()  # the invariant (counts and expiry index match) runs after each
    assert keeper.open_count.get(read(), validator) == 0 and not keeper.commitments.items(read())
    assert not keeper.claimed.items(read())  # forgotten with its receipt


def test_the_shipped_profile_is_the_corpus() -> None:
    assert TrafficProfile.shipped().requests == load_corpus()
