"""The inference module: escrow at start, payment at finish, refunds, API keys, routing."""

from __future__ import annotations

import dataclasses
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
from racenet.chain.modules import beacon, inference
from racenet.chain.modules.bank import BankGenesis, MsgSend
from racenet.chain.modules.bank.module import FEE_COLLECTOR
from racenet.chain.modules.bank.types import ModuleTotal
from racenet.chain.modules.inference import (
    InferenceGenesis,
    ModelEntry,
    MsgAuthorizeKey,
    MsgFinishRequest,
    MsgReassignRequest,
    MsgRevokeKey,
    MsgServeModels,
    MsgStartRequest,
    Params,
    ReceiptStatus,
    Request,
    RequestAuth,
    ServerEntry,
    api_key_id,
    auth_sign_bytes,
    choose_executor,
    key_request_id,
)
from racenet.chain.modules.inference.types import ApiKey
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.scalars import Amount
from racenet.chain.tx import build_tx
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, INITIAL_BALANCE, Chain, balances, key

MODEL = "SmolLM2-135M-Instruct"
NODES = [key(1), key(2), key(3)]
WEIGHTS = [10, 20, 30]
DEV, TA, STRANGER = key(50), key(51), key(52)
PROMPT_HASH = hashlib.sha256(b"prompt").digest()
UNIT_PRICE, UNITS = 1_000, 2
PRICE = UNIT_PRICE * UNITS
T = TypeVar("T")


def genesis() -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(WEIGHTS)],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*NODES, DEV, TA, STRANGER])),
            race=RaceGenesis(
                nodes=tuple(
                    RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
                    for i, (k, w) in enumerate(zip(NODES, WEIGHTS, strict=True))
                )
            ),
            inference=InferenceGenesis(
                params=Params(max_tokens=512, expiry_blocks=5),
                models=(ModelEntry(MODEL, UNITS),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"https://node{i}.example.com")
                    for i, k in enumerate(NODES)
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(UNIT_PRICE)),
        ),
    )


class InferenceChain(Chain):
    def run(self, signer: PrivateKey, msg: Msg) -> tuple[int, str]:
        """One message in its own block, as decided (so a malformed one gets its result too)."""
        address = signer.public_key.address
        accounts = self.app.auth.keeper
        sequence = accounts.account(self.app.read_context(), address).sequence
        r = self.decided_block(build_tx(signer, CHAIN_ID, sequence, FEE, [msg])).tx_results[0]
        self.sequences[address] = accounts.account(self.app.read_context(), address).sequence
        if isinstance(msg, MsgStartRequest) and r.code == 0:
            self.decided_block()  # the block that records the request's beacon round routes it
        return r.code, r.log

    def start_msg(
        self,
        n: int,
        max_tokens: int = 100,
        prompt_tokens: int = 20,
        developer: PrivateKey = DEV,
        signer: PrivateKey | None = None,
        expiry_height: int | None = None,
        agent: PrivateKey = TA,
        max_price: int = PRICE,
    ) -> MsgStartRequest:
        """A Start signed by `signer` (the developer by default) for `developer`, to be sent by `agent`."""
        request_id = hashlib.sha256(f"request {n}".encode()).digest()
        expiry = self.app.height + 10 if expiry_height is None else expiry_height
        auth = RequestAuth(
            chain_id=CHAIN_ID,
            request_id=request_id,
            developer=developer.public_key.address,
            transfer_agent=agent.public_key.address,
            model=MODEL,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            max_price_per_token=max_price,
            prompt_hash=PROMPT_HASH,
            expiry_height=expiry,
        )
        signer = signer or developer
        return MsgStartRequest(
            request_id=request_id,
            developer=developer.public_key.address,
            model=MODEL,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            max_price_per_token=max_price,
            prompt_hash=PROMPT_HASH,
            expiry_height=expiry,
            signer_key=signer.public_key.raw,
            signature=signer.sign(auth_sign_bytes(auth)),
            api_key_id=b"",
        )

    def request(self, request_id: bytes) -> Request:
        request = self.app.inference.keeper.requests.get(self.app.read_context(), request_id)
        assert request is not None
        return request

    def node(self, address: bytes) -> PrivateKey:
        return next(k for k in NODES if k.public_key.address == address)

    def pending(self, address: bytes) -> int:
        return self.app.inference.keeper.pending_reward(self.app.read_context(), address)

    def api_key(self, key_id: bytes) -> ApiKey:
        key = self.app.inference.keeper.api_keys.get(self.app.read_context(), key_id)
        assert key is not None
        return key


def key_start(
    key_id: bytes, max_tokens: int = 100, prompt_tokens: int = 20, developer: PrivateKey = DEV
) -> MsgStartRequest:
    """A Start paid by an API key (its gateway sends it)."""
    return MsgStartRequest(
        request_id=b"",
        developer=developer.public_key.address,
        model=MODEL,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        max_price_per_token=0,
        prompt_hash=PROMPT_HASH,
        expiry_height=0,
        signer_key=b"",
        signature=b"",
        api_key_id=key_id,
    )


def authorize(key_id: bytes, limit: int, gateways: tuple[PrivateKey, ...] = (TA,), expiry: int = 0) -> MsgAuthorizeKey:
    return MsgAuthorizeKey(
        key_id=key_id, spend_limit=limit, expiry_height=expiry, gateways=tuple(g.public_key.address for g in gateways)
    )


@pytest.fixture
def chain(tmp_path: Path) -> InferenceChain:
    c = Chain.start(tmp_path, genesis())
    chain = InferenceChain(c.app, c.driver)
    chain.until_beacon()
    return chain


def test_start_escrows_and_finish_pays_actual_cost(chain: InferenceChain) -> None:
    start = chain.start_msg(1)
    assert chain.run(TA, start) == (0, "")
    escrow = (20 + 100) * PRICE
    assert chain.balance(DEV) == INITIAL_BALANCE - escrow
    executor = chain.request(start.request_id).executor
    assert chain.run(chain.node(executor), finish(start.request_id, 37)) == (0, "")
    cost = (20 + 37) * PRICE
    assert chain.balance(DEV) == INITIAL_BALANCE - cost
    assert chain.pending(executor) == 2 * cost  # the fee and the subsidy it mints (1 × the fee: the default cap)
    receipt = chain.app.inference.keeper.receipts.get(chain.app.read_context(), start.request_id)
    assert receipt is not None and (receipt.status, receipt.cost, receipt.completion_tokens) == (
        ReceiptStatus.FINISHED,
        cost,
        37,
    )


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("max_tokens over limit", Code.INVALID_MESSAGE, "limited to"),
        ("prompt over limit", Code.INVALID_MESSAGE, "limited to"),
        ("signed by a stranger", Code.UNAUTHORIZED, "not signed by the developer"),
        ("bad signature", Code.BAD_SIGNATURE, "does not verify"),
        ("prompt count changed", Code.BAD_SIGNATURE, "does not verify"),
        ("expired", Code.INVALID_MESSAGE, "expires at"),
        ("expiry too far", Code.INVALID_MESSAGE, "expires at"),
        ("insufficient balance", Code.INSUFFICIENT_FUNDS, "has"),
    ],
)
def test_bad_starts_leave_no_escrow(chain: InferenceChain, case: str, code: Code, message: str) -> None:
    start = chain.start_msg(2)
    if case == "max_tokens over limit":
        start = chain.start_msg(2, max_tokens=513)
    elif case == "prompt over limit":
        start = chain.start_msg(2, prompt_tokens=Params().max_prompt_tokens + 1)
    elif case == "signed by a stranger":
        start = chain.start_msg(2, signer=STRANGER)
    elif case == "bad signature":
        start = replace(start, signature=bytes(64))
    elif case == "prompt count changed":
        start = replace(start, prompt_tokens=start.prompt_tokens + 1)
    elif case == "expired":
        start = chain.start_msg(2, expiry_height=chain.app.height)
    elif case == "expiry too far":
        start = chain.start_msg(2, expiry_height=chain.app.height + 2 + Params().max_auth_blocks)
    elif case == "insufficient balance":
        start = chain.start_msg(2, max_tokens=500, prompt_tokens=32_000)
        chain.run(DEV, MsgSend(TA.public_key.address, INITIAL_BALANCE - 10 * FEE))
        start = chain.start_msg(2, max_tokens=500, prompt_tokens=32_000)
    before = chain.balance(DEV)
    got, log = chain.run(TA, start)
    assert (got, message in log) == (code, True), log
    assert chain.balance(DEV) == before
    assert chain.app.bank.keeper.escrows.items(chain.app.read_context()) == []


def test_a_transfer_agent_cannot_overcharge_a_signed_request(chain: InferenceChain) -> None:
    """H1 (security review, poc_prompt_tokens): on 480aad9 the transfer agent declared the prompt token count,
    so it could escrow and pay out the developer's whole balance. The developer now signs the count: any other
    count fails the signature, and the most a request costs is what the developer signed."""
    balance = chain.balance(DEV)
    signed = chain.start_msg(20, max_tokens=100, prompt_tokens=20)
    inflated = replace(signed, prompt_tokens=Params().max_prompt_tokens)
    assert chain.run(TA, inflated)[0] == Code.BAD_SIGNATURE
    assert chain.balance(DEV) == balance
    assert chain.run(TA, signed)[0] == 0
    assert chain.balance(DEV) == balance - (20 + 100) * PRICE


def test_an_old_signed_request_cannot_be_opened_later(chain: InferenceChain) -> None:
    """H1 (security review, poc_signed_replay): a signed request no longer lives forever. It names a last height
    (at most `max_auth_blocks` ahead), and a Start after it is refused; the transfer agent no longer picks the
    routing cycle or the executor, and cannot reassign in the Start's block."""
    start = chain.start_msg(21, expiry_height=chain.app.height + 3)
    for _ in range(3):
        chain.block()
    got, log = chain.run(TA, start)
    assert (got, "expires at" in log) == (Code.INVALID_MESSAGE, True), log
    fresh = chain.start_msg(22)
    results = chain.block(chain.tx(TA, fresh), chain.tx(TA, MsgReassignRequest(fresh.request_id))).tx_results
    assert [r.code for r in results] == [0, Code.TOO_EARLY]


def test_a_signed_request_is_opened_only_at_a_price_its_developer_accepted(chain: InferenceChain) -> None:
    """Prices are voted each cycle: a transfer agent holding a signed request until the price rises cannot open it
    at the higher price, since the developer signed the most it pays per token."""
    balance = chain.balance(DEV)
    code, log = chain.run(TA, chain.start_msg(30, max_price=PRICE - 1))
    assert code == Code.INVALID_MESSAGE and "above the" in log
    assert chain.balance(DEV) == balance
    tampered = dataclasses.replace(chain.start_msg(31, max_price=PRICE - 1), max_price_per_token=PRICE)
    assert chain.run(TA, tampered)[0] == Code.BAD_SIGNATURE  # the bound is signed
    assert chain.run(TA, chain.start_msg(32, max_price=PRICE))[0] == 0


def test_a_signed_start_copied_from_the_mempool_is_refused(chain: InferenceChain) -> None:
    """Review of the H1 fix: the developer signs the transfer agent it hands the request to, so a node that copies
    the Start out of a mempool cannot open it in its own name (and so route it, reassign it or refuse it)."""
    start = chain.start_msg(23)
    assert chain.run(NODES[0], start)[0] == Code.BAD_SIGNATURE
    assert chain.run(TA, start)[0] == 0


def test_an_earlier_executor_that_answered_is_paid_after_a_reassign(chain: InferenceChain) -> None:
    """Review of the H1 fix: a transfer agent that reassigns while the first executor is still answering cannot
    take that work unpaid: any executor the request was routed to may finish it, and the first Finish is paid."""
    start = chain.start_msg(24)
    assert chain.run(TA, start)[0] == 0
    first = chain.request(start.request_id).executor
    chain.block()
    assert chain.run(TA, MsgReassignRequest(start.request_id))[0] == 0
    assert chain.run(chain.node(first), finish(start.request_id, 5))[0] == 0
    assert chain.pending(first) == 2 * (20 + 5) * PRICE  # its fee and phase 1's (capped) subsidy
    receipt = chain.app.inference.keeper.receipts.get(chain.app.read_context(), start.request_id)
    assert receipt is not None and receipt.executor == first


def test_a_signed_request_cannot_take_an_api_key_request_id(chain: InferenceChain) -> None:
    """Review of the H2 fix: API-key request ids are predictable, so a signed request could claim the next one
    first and merge escrows. The key's request skips a taken id, and every escrow keeps its own request."""
    key_id = api_key_id(b"collide")
    assert chain.run(DEV, authorize(key_id, 10**12))[0] == 0
    taken = key_request_id(key_id, 0)
    squatter = replace(chain.start_msg(25, developer=STRANGER), request_id=taken)
    auth = replace(squatter.auth(CHAIN_ID, TA.public_key.address), request_id=taken)
    squatter = replace(squatter, signature=STRANGER.sign(auth_sign_bytes(auth)))
    assert chain.run(TA, squatter)[0] == 0
    assert chain.run(TA, key_start(key_id))[0] == 0
    assert chain.request(taken).developer == STRANGER.public_key.address
    assert chain.request(key_request_id(key_id, 1)).api_key_id == key_id
    assert chain.api_key(key_id).requests == 2


def test_replayed_request_is_rejected(chain: InferenceChain) -> None:
    start = chain.start_msg(3)
    assert chain.run(TA, start)[0] == 0
    assert chain.run(TA, start)[0] == Code.DUPLICATE_REQUEST


def test_unfinished_request_expires_with_full_refund(chain: InferenceChain) -> None:
    start = chain.start_msg(4)
    assert chain.run(TA, start)[0] == 0
    executor = chain.request(start.request_id).executor
    for _ in range(5):
        chain.block()
    assert chain.balance(DEV) == INITIAL_BALANCE
    receipt = chain.app.inference.keeper.receipts.get(chain.app.read_context(), start.request_id)
    assert receipt is not None and receipt.status == ReceiptStatus.EXPIRED
    assert chain.run(chain.node(executor), finish(start.request_id, 1))[0] == Code.NOT_FOUND


def test_reassign_waits_and_moves_to_another_executor(chain: InferenceChain) -> None:
    start = chain.start_msg(5)
    assert chain.run(TA, start)[0] == 0
    first = chain.request(start.request_id).executor
    assert chain.run(DEV, MsgReassignRequest(start.request_id))[0] == Code.UNAUTHORIZED
    assert chain.run(TA, MsgReassignRequest(start.request_id))[0] == 0, "two blocks after routing"
    request = chain.request(start.request_id)
    assert request.executor != first and request.tried == (first,)
    assert request.executor == chain.app.inference.keeper.executor_for(
        chain.app.read_context(), start.request_id, MODEL, request.route_round, 1, (first, TA.public_key.address)
    )
    stranger = next(k for k in NODES if k.public_key.address not in (first, request.executor))
    assert chain.run(stranger, finish(start.request_id, 1))[0] == Code.UNAUTHORIZED
    assert chain.run(chain.node(request.executor), finish(start.request_id, 1))[0] == 0


def test_the_executor_comes_from_a_round_nobody_knew_when_the_start_was_included(chain: InferenceChain) -> None:
    """Whoever signed, sent or proposed the Start: the round that picks its executor was signed only afterwards."""
    start = chain.start_msg(8)
    start_height = chain.app.height + 1
    assert chain.run(TA, start)[0] == 0
    request = chain.request(start.request_id)
    ctx = chain.app.read_context()
    beacon_keeper = chain.app.beacon.keeper
    record = beacon_keeper.rounds.get(ctx, request.route_round)
    assert record is not None and record.height > start_height  # its partials were made after the Start's block
    servers = [
        (s.address, s.weight) for s in _query(chain, inference.SERVERS.decode, "inference/servers", MODEL).servers
    ]
    exclude = (TA.public_key.address,)
    assert request.executor == choose_executor(record.output, start.request_id, 0, servers, exclude)


def test_the_transfer_agent_is_never_its_own_requests_executor(chain: InferenceChain) -> None:
    """H2 (security review): a node that opens a request (a gateway holding an API key, or the transfer agent of
    a signed request) is never drawn as its executor, on the first draw or on a reassign."""
    gateway = NODES[2]
    key_id = api_key_id(b"gateway test")
    assert chain.run(DEV, authorize(key_id, 10**15, (gateway,)))[0] == 0
    executors = set()
    for n in range(30):
        signed = chain.start_msg(100 + n, agent=gateway)
        txs = [chain.tx(gateway, key_start(key_id)), chain.tx(gateway, signed)]
        assert [r.code for r in chain.block(*txs).tx_results] == [0, 0]
        chain.block()  # records the requests' beacon round: the chain routes them
        for request_id in (key_request_id(key_id, n), signed.request_id):
            assert chain.request(request_id).transfer_agent == gateway.public_key.address
            executors.add(chain.request(request_id).executor)
    assert gateway.public_key.address not in executors
    assert len(executors) == 2


def test_api_keys_are_ids_of_secrets_bound_to_their_gateways(chain: InferenceChain) -> None:
    """H2 (security review): an API key was an ed25519 seed handed to whichever node was called, which could sign
    any request with it. Now the chain holds only the id (a hash) of a random secret; only the gateways the user
    named can open requests with it, the chain numbers those requests (nobody picks their ids, so nobody grinds
    the routing), and an expired or revoked key opens nothing."""
    key_id = api_key_id(b"secret")
    assert chain.run(DEV, authorize(key_id, 10**12, (TA,), expiry=chain.app.height + 8))[0] == 0
    assert chain.run(STRANGER, key_start(key_id))[0] == Code.UNAUTHORIZED, "not a gateway"
    assert chain.run(TA, key_start(key_id, developer=STRANGER))[0] == Code.UNAUTHORIZED, "not the key's account"
    assert chain.run(TA, key_start(key_id))[0] == 0
    first = key_request_id(key_id, 0)
    assert chain.request(first).api_key_id == key_id
    assert chain.run(TA, key_start(key_id))[0] == 0
    assert chain.request(key_request_id(key_id, 1)).transfer_agent == TA.public_key.address
    got, log = chain.run(TA, key_start(key_id))
    assert (got, "expired" in log) == (Code.UNAUTHORIZED, True), log
    listed = chain.app.inference.keeper.query_key_requests(chain.app.read_context(), key_id)
    assert [r.id for r in listed.requests] == [first, key_request_id(key_id, 1)]
    other = api_key_id(b"other")
    assert chain.run(DEV, authorize(other, 10**12))[0] == 0
    assert chain.run(DEV, MsgRevokeKey(other))[0] == 0
    assert chain.run(TA, key_start(other))[0] == Code.UNAUTHORIZED, "revoked"
    keys = chain.app.inference.keeper.query_apikeys(chain.app.read_context(), DEV.public_key.address)
    assert {k.id for k in keys.keys} == {key_id, other}


def test_api_key_spends_within_its_limit(chain: InferenceChain) -> None:
    key_id = api_key_id(b"limit")
    limit = (20 + 100) * PRICE
    assert chain.run(DEV, authorize(key_id, limit))[0] == 0
    start = key_start(key_id)
    assert chain.run(TA, start)[0] == 0
    code, log = chain.run(TA, key_start(key_id))
    assert code == Code.INSUFFICIENT_FUNDS and "API key" in log
    request_id = key_request_id(key_id, 0)
    assert chain.run(chain.node(chain.request(request_id).executor), finish(request_id, 0))[0] == 0
    assert chain.api_key(key_id).remaining() == limit - 20 * PRICE
    assert chain.balance(DEV) == INITIAL_BALANCE - FEE - 20 * PRICE


def test_refunds_never_raise_a_key_above_its_limit(chain: InferenceChain) -> None:
    """L2 (security review): re-authorizing reset what a key had left, and refunds of earlier requests then
    came on top, so a key could escrow more than its limit; after revoke plus re-authorization by another
    account, refunds went to the new record. Now `spent` carries over, refunds only lower it (never below 0),
    a revoked key stays revoked, and nobody else can take over its id."""
    key_id = api_key_id(b"l2")
    limit = (20 + 100) * PRICE
    assert chain.run(DEV, authorize(key_id, limit))[0] == 0
    assert chain.run(TA, key_start(key_id))[0] == 0
    assert chain.run(DEV, authorize(key_id, limit))[0] == 0, "re-limit at the same value"
    assert chain.api_key(key_id).remaining() == 0, "what the open request escrowed still counts"
    for _ in range(5):
        chain.block()
    assert chain.api_key(key_id).remaining() == limit, "the expiry refund brings it back to the limit, not above"
    assert chain.run(STRANGER, authorize(key_id, limit))[0] == Code.UNAUTHORIZED
    assert chain.run(DEV, MsgRevokeKey(key_id))[0] == 0
    assert chain.run(DEV, authorize(key_id, limit))[0] == Code.ALREADY_DONE


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:9000",
        "http://localhost:8080",
        "http://10.1.2.3/api",
        "http://169.254.169.254/latest",
        "http://[::1]:80",
        "http://example.com/?to=/admin",
        "http://example.com/#x",
        "http://user@example.com",
        "ftp://example.com",
        "http:///nohost",
        "http://127.1:8080",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0/",
    ],
)
def test_executor_endpoints_must_be_public_urls(tmp_path: Path, endpoint: str) -> None:
    """L1 (security review): a ServeModels endpoint could point transfer agents at loopback or metadata services,
    or redirect the forward's path with a query or fragment. Only public http(s) hosts without user info, query
    or fragment are accepted (a devnet allows loopback with `allow_private_endpoints`)."""
    c = Chain.start(tmp_path, genesis())
    chain = InferenceChain(c.app, c.driver)
    chain.block()
    assert chain.run(NODES[0], MsgServeModels((MODEL,), endpoint))[0] == Code.INVALID_MESSAGE
    assert chain.run(NODES[0], MsgServeModels((MODEL,), "https://node.example.com:8443/racenet"))[0] == 0


def test_receipts_are_pruned_after_retention_and_their_ids_stay_unusable(tmp_path: Path) -> None:
    """L9 (security review): receipts were kept forever. They are now pruned `receipt_retention_blocks` after
    the request closes, never before its signature expired, so a pruned id cannot be opened again."""
    params = replace(genesis().app_state.inference.params, receipt_retention_blocks=2)
    doc = genesis()
    doc = replace(doc, app_state=replace(doc.app_state, inference=replace(doc.app_state.inference, params=params)))
    c = Chain.start(tmp_path, doc)
    chain = InferenceChain(c.app, c.driver)
    chain.until_beacon()
    start = chain.start_msg(30, expiry_height=chain.app.height + 8)
    assert chain.run(TA, start)[0] == 0
    executor = chain.node(chain.request(start.request_id).executor)
    assert chain.run(executor, finish(start.request_id, 3))[0] == 0
    receipts = chain.app.inference.keeper.receipts
    for _ in range(8):
        chain.block()
    assert receipts.get(chain.app.read_context(), start.request_id) is None, "pruned"
    got, log = chain.run(TA, start)
    assert (got, "expires at" in log) == (Code.INVALID_MESSAGE, True)


def test_open_requests_survive_export_and_import(chain: InferenceChain, tmp_path: Path) -> None:
    """L4 (security review): an export/import orphaned request escrows. Open requests, API keys and receipts now
    round-trip with their escrows, and the supply invariant names the fee collector and module escrows."""
    key_id = api_key_id(b"export")
    assert chain.run(DEV, authorize(key_id, 10**12))[0] == 0
    assert chain.run(TA, key_start(key_id))[0] == 0
    assert chain.run(TA, chain.start_msg(40))[0] == 0
    exported = chain.app.export_genesis()
    doc = Genesis(chain_id=CHAIN_ID, genesis_time=GENESIS_TIME, app_state=exported)
    again = Chain.start(tmp_path / "again", doc)
    again.app.check_invariants()
    assert again.app.export_genesis() == exported
    supply = again.app.bank.keeper.query_supply(again.app.read_context(), None)
    assert supply.fee_collector == chain.balance(FEE_COLLECTOR) > 0
    assert supply.escrowed == (ModuleTotal("inference", (20 + 100) * PRICE * 2),)


def test_executor_choice_follows_weights_and_is_recomputable(chain: InferenceChain) -> None:
    """1,000 request ids: chi-square against the 10:20:30 weights; each choice recomputed from queries."""
    app = chain.app
    latest = _query(chain, beacon.ROUND.decode, "beacon/round", "latest")
    assert latest is not None
    seed = latest.output
    servers = [
        (s.address, s.weight) for s in _query(chain, inference.SERVERS.decode, "inference/servers", MODEL).servers
    ]
    ids = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1000)]
    chosen = [app.inference.keeper.executor_for(app.read_context(), i, MODEL, latest.round, 0, ()) for i in ids]
    assert chosen == [choose_executor(seed, i, 0, servers, ()) for i in ids]
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
