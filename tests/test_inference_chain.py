"""The inference module: escrow at start, payment at finish, refunds, API keys, routing."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.errors import Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules import inference, race
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.inference import (
    InferenceGenesis,
    ModelEntry,
    MsgAuthorizeKey,
    MsgFinishRequest,
    MsgReassignRequest,
    MsgStartRequest,
    Params,
    ReceiptStatus,
    RequestAuth,
    ServerEntry,
    auth_sign_bytes,
    choose_executor,
)
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.scalars import Amount
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, INITIAL_BALANCE, Chain, balances, key

MODEL = "SmolLM2-135M-Instruct"
NODES = [key(1), key(2), key(3)]
WEIGHTS = [10, 20, 30]
DEV, TA, SESSION = key(50), key(51), key(52)
UNIT_PRICE, UNITS = 1_000, 2
PRICE = UNIT_PRICE * UNITS
T = TypeVar("T")


def genesis() -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(WEIGHTS)],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*NODES, DEV, TA])),
            race=RaceGenesis(
                nodes=tuple(
                    RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
                    for i, (k, w) in enumerate(zip(NODES, WEIGHTS, strict=True))
                )
            ),
            inference=InferenceGenesis(
                params=Params(unit_price=Amount(UNIT_PRICE), max_tokens=512, expiry_blocks=5),
                models=(ModelEntry(MODEL, UNITS),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"http://127.0.0.1:{9000 + i}")
                    for i, k in enumerate(NODES)
                ),
            ),
        ),
    )


class InferenceChain(Chain):
    def run(self, signer: PrivateKey, msg: Msg) -> tuple[int, str]:
        r = self.block(self.tx(signer, msg)).tx_results[0]
        return r.code, r.log

    def executor(self, request_id: bytes, attempt: int = 0, tried: tuple[bytes, ...] = ()) -> bytes:
        ctx = self.app.read_context()
        return self.app.inference.keeper.executor_for(ctx, request_id, MODEL, 0, attempt, tried)

    def start_msg(
        self,
        n: int,
        signer: PrivateKey = DEV,
        max_tokens: int = 100,
        prompt_tokens: int = 20,
        executor: bytes | None = None,
        developer: PrivateKey = DEV,
    ) -> MsgStartRequest:
        request_id = hashlib.sha256(f"request {n}".encode()).digest()
        prompt_hash = hashlib.sha256(b"prompt").digest()
        auth = RequestAuth(
            chain_id=CHAIN_ID,
            request_id=request_id,
            developer=developer.public_key.address,
            model=MODEL,
            max_tokens=max_tokens,
            prompt_hash=prompt_hash,
        )
        return MsgStartRequest(
            request_id=request_id,
            developer=developer.public_key.address,
            model=MODEL,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            prompt_hash=prompt_hash,
            cycle=0,
            executor=executor or self.executor(request_id),
            auth_key=signer.public_key.raw,
            auth_signature=signer.sign(auth_sign_bytes(auth)),
        )

    def node(self, address: bytes) -> PrivateKey:
        return next(k for k in NODES if k.public_key.address == address)

    def pending(self, address: bytes) -> int:
        return self.app.inference.keeper.pending_reward(self.app.read_context(), address)


@pytest.fixture
def chain(tmp_path: Path) -> InferenceChain:
    c = Chain.start(tmp_path, genesis())
    chain = InferenceChain(c.app, c.driver)
    chain.block()
    return chain


def test_start_escrows_and_finish_pays_actual_cost(chain: InferenceChain) -> None:
    start = chain.start_msg(1)
    assert chain.run(TA, start) == (0, "")
    escrow = (20 + 100) * PRICE
    assert chain.balance(DEV) == INITIAL_BALANCE - escrow
    executor = chain.node(start.executor)
    assert chain.run(executor, finish(start.request_id, 37)) == (0, "")
    cost = (20 + 37) * PRICE
    assert chain.balance(DEV) == INITIAL_BALANCE - cost
    assert chain.pending(start.executor) == cost
    receipt = chain.app.inference.keeper.receipts.get(chain.app.read_context(), start.request_id)
    assert receipt is not None and (receipt.status, receipt.cost, receipt.completion_tokens) == (
        ReceiptStatus.FINISHED,
        cost,
        37,
    )


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("wrong executor", Code.WRONG_EXECUTOR, "routing rule"),
        ("max_tokens over limit", Code.INVALID_MESSAGE, "over the limit"),
        ("signed by a stranger", Code.UNAUTHORIZED, "not signed by the developer"),
        ("bad signature", Code.BAD_SIGNATURE, "does not verify"),
        ("insufficient balance", Code.INSUFFICIENT_FUNDS, "has"),
    ],
)
def test_bad_starts_leave_no_escrow(chain: InferenceChain, case: str, code: Code, message: str) -> None:
    start = chain.start_msg(2)
    if case == "wrong executor":
        wrong = next(k.public_key.address for k in NODES if k.public_key.address != start.executor)
        start = chain.start_msg(2, executor=wrong)
    elif case == "max_tokens over limit":
        start = chain.start_msg(2, max_tokens=513)
    elif case == "signed by a stranger":
        start = chain.start_msg(2, signer=SESSION)
    elif case == "bad signature":
        start = replace(start, auth_signature=bytes(64))
    elif case == "insufficient balance":
        start = chain.start_msg(2, max_tokens=500, prompt_tokens=10**9)
    before = chain.balance(DEV)
    got, log = chain.run(TA, start)
    assert (got, message in log) == (code, True), log
    assert chain.balance(DEV) == before
    assert chain.app.bank.keeper.escrows.items(chain.app.read_context()) == []


def test_replayed_request_is_rejected(chain: InferenceChain) -> None:
    start = chain.start_msg(3)
    assert chain.run(TA, start)[0] == 0
    assert chain.run(TA, start)[0] == Code.DUPLICATE_REQUEST


def test_unfinished_request_expires_with_full_refund(chain: InferenceChain) -> None:
    start = chain.start_msg(4)
    assert chain.run(TA, start)[0] == 0
    for _ in range(5):
        chain.block()
    assert chain.balance(DEV) == INITIAL_BALANCE
    receipt = chain.app.inference.keeper.receipts.get(chain.app.read_context(), start.request_id)
    assert receipt is not None and receipt.status == ReceiptStatus.EXPIRED
    assert chain.run(chain.node(start.executor), finish(start.request_id, 1))[0] == Code.NOT_FOUND


def test_reassign_moves_to_another_executor(chain: InferenceChain) -> None:
    start = chain.start_msg(5)
    assert chain.run(TA, start)[0] == 0
    assert chain.run(DEV, MsgReassignRequest(start.request_id))[0] == Code.UNAUTHORIZED
    assert chain.run(TA, MsgReassignRequest(start.request_id))[0] == 0
    request = chain.app.inference.keeper.requests.get(chain.app.read_context(), start.request_id)
    assert request is not None and request.executor != start.executor
    assert request.executor == chain.executor(start.request_id, 1, (start.executor,))
    assert chain.run(chain.node(start.executor), finish(start.request_id, 1))[0] == Code.UNAUTHORIZED
    assert chain.run(chain.node(request.executor), finish(start.request_id, 1))[0] == 0


def test_api_key_spends_within_its_limit(chain: InferenceChain) -> None:
    limit = (20 + 100) * PRICE
    assert chain.run(DEV, MsgAuthorizeKey(SESSION.public_key.raw, limit))[0] == 0
    fee_paid = FEE
    start = chain.start_msg(6, signer=SESSION)
    assert chain.run(TA, start)[0] == 0
    second = chain.start_msg(7, signer=SESSION)
    code, log = chain.run(TA, second)
    assert code == Code.INSUFFICIENT_FUNDS and "API key" in log
    assert chain.run(chain.node(start.executor), finish(start.request_id, 0))[0] == 0
    key = chain.app.inference.keeper.api_keys.get(chain.app.read_context(), SESSION.public_key.raw)
    assert key is not None and key.remaining == limit - 20 * PRICE
    assert chain.balance(DEV) == INITIAL_BALANCE - fee_paid - 20 * PRICE


def test_executor_choice_follows_weights_and_is_recomputable(chain: InferenceChain) -> None:
    """1,000 request ids: chi-square against the 10:20:30 weights; each choice recomputed from queries."""
    app = chain.app
    seed = _query(chain, race.CYCLE.decode, "race/cycle").race_seed
    servers = [
        (s.address, s.weight) for s in _query(chain, inference.SERVERS.decode, "inference/servers", MODEL).servers
    ]
    ids = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1000)]
    chosen = [app.inference.keeper.executor_for(app.read_context(), i, MODEL, 0, 0) for i in ids]
    assert chosen == [choose_executor(seed, i, 0, servers) for i in ids]
    counts = Counter(chosen)
    total = sum(WEIGHTS)
    chi2 = sum(
        (counts[k.public_key.address] - 1000 * w / total) ** 2 / (1000 * w / total)
        for k, w in zip(NODES, WEIGHTS, strict=True)
    )
    assert chi2 < 13.82, f"chi-square {chi2:.2f} exceeds the p=0.001 critical value for 2 degrees of freedom"


def _query(chain: InferenceChain, decode: Callable[[Any], T], path: str, data: str = "") -> T:
    """A query answered as JSON and read back as the response type (what a client sees)."""
    r = chain.app.query(path, data.encode())
    assert r.code == 0, r.log
    return decode(json.loads(r.value))


def finish(request_id: bytes, completion_tokens: int) -> MsgFinishRequest:
    return MsgFinishRequest(request_id=request_id, completion_tokens=completion_tokens, response_hash=bytes(32))
