"""Every rejected transaction gets its code and message. A rejection by the ante checks (decode,
signature, chain id, sequence, fee) changes no state; a message that fails in a block changes only
the signer's fee and sequence (security review M3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from racenet.chain.codec import decode, encode
from racenet.chain.errors import Code
from racenet.chain.modules.auth import Params as AuthParams
from racenet.chain.modules.bank import MsgSend, MsgUpdateParams
from racenet.chain.modules.bank import Params as BankParams
from racenet.chain.modules.bank.module import FEE_COLLECTOR
from racenet.chain.tx import AnyMsg, SignedTx, TxBody, build_tx, sign_bytes
from racenet.chain.types import BlockRequest
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, INITIAL_BALANCE, Chain, genesis_for, key

ALICE, BOB, MALLORY = key(1), key(2), key(3)
TO_BOB = MsgSend(BOB.public_key.address, 5)


def _least_fee(msgs: list[MsgSend]) -> int:
    """The least fee the default schedule takes for a transaction of `msgs` from ALICE at sequence 0."""
    for fee in range(BankParams().min_fee, FEE):
        if BankParams().required_fee(len(build_tx(ALICE, CHAIN_ID, 0, fee, list(msgs))), [0] * len(msgs)) <= fee:
            return fee
    raise AssertionError("no fee below FEE covers the transaction")


def _tamper_fee(raw: bytes) -> bytes:
    tx = decode(SignedTx, raw)
    return encode(replace(tx, body=replace(tx.body, fee=tx.body.fee + 1)))


def _resign(body: TxBody) -> bytes:
    pub = ALICE.public_key.raw
    return encode(SignedTx(1, body, pub, ALICE.sign(sign_bytes(pub, body))))


def _flip_signature(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def _other_signer(raw: bytes) -> bytes:
    tx = decode(SignedTx, raw)
    return encode(replace(tx, signature=MALLORY.sign(sign_bytes(tx.pub_key, tx.body))))


Case = tuple[str, Callable[[], bytes], Code, str]
CASES: list[Case] = [
    (
        "bad signature",
        lambda: _flip_signature(build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB])),
        Code.BAD_SIGNATURE,
        "signature",
    ),
    (
        "signed by another key",
        lambda: _other_signer(build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB])),
        Code.BAD_SIGNATURE,
        "signature",
    ),
    (
        "fee changed after signing",
        lambda: _tamper_fee(build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB])),
        Code.BAD_SIGNATURE,
        "signature",
    ),
    ("wrong chain id", lambda: build_tx(ALICE, "other-chain", 0, FEE, [TO_BOB]), Code.WRONG_CHAIN_ID, "other-chain"),
    (
        "sequence from the future",
        lambda: build_tx(ALICE, CHAIN_ID, 1, FEE, [TO_BOB]),
        Code.WRONG_SEQUENCE,
        "expected 0",
    ),
    ("fee above balance", lambda: build_tx(MALLORY, CHAIN_ID, 0, FEE, [TO_BOB]), Code.INSUFFICIENT_FUNDS, "has 0"),
    (
        "fee below the schedule",
        lambda: build_tx(ALICE, CHAIN_ID, 0, _least_fee([TO_BOB]) - 1, [TO_BOB]),
        Code.INSUFFICIENT_FEE,
        "required",
    ),
    (
        "too many messages",
        lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB] * (AuthParams().max_msgs_per_tx + 1)),
        Code.MALFORMED_TX,
        "messages",
    ),
    ("random bytes", lambda: b"\x07garbage", Code.MALFORMED_TX, "malformed"),
    ("empty", lambda: b"", Code.MALFORMED_TX, "malformed"),
    ("trailing byte", lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB]) + b"\x00", Code.MALFORMED_TX, "trailing"),
    ("truncated", lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB])[:-10], Code.MALFORMED_TX, "malformed"),
    (
        "unknown version",
        lambda: b"\x02" + build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB])[1:],
        Code.MALFORMED_TX,
        "version",
    ),
    (
        "unknown message type",
        lambda: _resign(TxBody(CHAIN_ID, 0, FEE, "", (AnyMsg("bank/Steal", b""),))),
        Code.UNKNOWN_MESSAGE,
        "bank/Steal",
    ),
    (
        "malformed message",
        lambda: _resign(TxBody(CHAIN_ID, 0, FEE, "", (AnyMsg("bank/Send", b"\x01"),))),
        Code.MALFORMED_TX,
        "bank/Send",
    ),
    ("no messages", lambda: _resign(TxBody(CHAIN_ID, 0, FEE, "", ())), Code.MALFORMED_TX, "1 to 64 messages"),
    (
        "zero amount",
        lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [MsgSend(BOB.public_key.address, 0)]),
        Code.INVALID_MESSAGE,
        "positive",
    ),
    (
        "short recipient",
        lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [MsgSend(b"\x01" * 19, 5)]),
        Code.INVALID_MESSAGE,
        "20-byte",
    ),
    ("memo too long", lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB], memo="x" * 300), Code.MALFORMED_TX, "memo"),
    ("oversize", lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB], memo="x" * 70_000), Code.TX_TOO_LARGE, "limit"),
]
FAILED_MESSAGES: list[Case] = [
    (
        "insufficient funds",
        lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [MsgSend(BOB.public_key.address, INITIAL_BALANCE)]),
        Code.INSUFFICIENT_FUNDS,
        "has",
    ),
    (
        "not governance",
        lambda: build_tx(ALICE, CHAIN_ID, 0, FEE, [MsgUpdateParams(BankParams())]),
        Code.UNAUTHORIZED,
        "only governance",
    ),
]


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    c = Chain.start(tmp_path, genesis_for([ALICE, BOB]))
    c.block()
    return c


@pytest.mark.parametrize("name, make, code, message", CASES, ids=[c[0] for c in CASES])
def test_rejected_in_check_tx_and_block(
    chain: Chain, name: str, make: Callable[[], bytes], code: Code, message: str
) -> None:
    raw = make()
    checked = chain.app.check_tx(raw)
    assert (checked.code, message in checked.log) == (code, True), checked.log

    before = chain.state()
    result = chain.decided_block(raw)
    assert result.tx_results[0].code == code
    assert message in result.tx_results[0].log
    assert chain.state() == before

    valid = build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB])
    assert chain.app.check_tx(valid).code == 0, "a rejection must not advance the sequence or spend"


@pytest.mark.parametrize("name, make, code, message", FAILED_MESSAGES, ids=[c[0] for c in FAILED_MESSAGES])
def test_failed_message_pays_its_fee_and_bumps_the_sequence(
    chain: Chain, name: str, make: Callable[[], bytes], code: Code, message: str
) -> None:
    """M3: a transaction whose message fails in a block pays its fee and uses its sequence, so it can never be
    replayed and failing transactions are not free block space; CheckTx refuses it without charging."""
    raw = make()
    checked = chain.app.check_tx(raw)
    assert (checked.code, message in checked.log) == (code, True), checked.log
    assert chain.app.check_tx(build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB])).code == 0, "CheckTx charged nothing"

    result = chain.decided_block(raw)
    assert (result.tx_results[0].code, message in result.tx_results[0].log) == (code, True)
    assert chain.balance(ALICE) == INITIAL_BALANCE - FEE
    assert chain.balance(FEE_COLLECTOR) == FEE
    assert chain.app.auth.keeper.account(chain.app.read_context(), ALICE.public_key.address).sequence == 1
    replay = chain.decided_block(raw).tx_results[0]
    assert replay.code == Code.WRONG_SEQUENCE, "the failed transaction cannot be replayed once it would pass"


def test_replayed_transaction_is_rejected(chain: Chain) -> None:
    raw = chain.tx(ALICE, TO_BOB)
    assert chain.block(raw).tx_results[0].code == 0
    assert chain.balance(BOB) == INITIAL_BALANCE + 5
    before = chain.state()
    replay = chain.decided_block(raw).tx_results[0]
    assert replay.code == Code.WRONG_SEQUENCE
    assert chain.state() == before


def test_proposals_carry_only_transactions_that_pass_the_ante(chain: Chain) -> None:
    """M3: a proposer cannot fill a block with transactions nobody signed or pays for: PrepareProposal drops
    them and ProcessProposal refuses a block that carries one."""
    good, replayed = chain.tx(ALICE, TO_BOB), build_tx(ALICE, CHAIN_ID, 0, FEE, [TO_BOB])
    garbage = _flip_signature(chain.tx(ALICE, TO_BOB))
    draft = BlockRequest(chain.app.height + 1, GENESIS_TIME + 100, (good, replayed, garbage))
    assert chain.app.prepare_proposal(draft, 1 << 20) == (good,)
    assert not chain.app.process_proposal(draft)
    assert chain.app.process_proposal(BlockRequest(draft.height, draft.time, (good,)))


def test_accepted_transfer_moves_amount_and_fee(chain: Chain) -> None:
    result = chain.block(chain.tx(ALICE, TO_BOB), chain.tx(ALICE, TO_BOB))
    assert [r.code for r in result.tx_results] == [0, 0]
    assert chain.balance(ALICE) == INITIAL_BALANCE - 2 * (5 + FEE)
    assert chain.balance(BOB) == INITIAL_BALANCE + 10
    assert chain.balance(FEE_COLLECTOR) == 2 * FEE
    event = result.tx_results[0].events[0]
    assert event.type == "transfer"
    assert dict(event.attributes)["amount"] == "5"


def test_proposals_carry_only_decodable_transactions(chain: Chain) -> None:
    good = chain.tx(ALICE, TO_BOB)
    proposal = chain.driver.propose([b"junk", good, b""], 0)
    assert proposal.txs == (good,)
    assert chain.app.process_proposal(proposal)
    assert not chain.app.process_proposal(replace(proposal, txs=(good, b"junk")))


def test_garbage_is_neither_decoded_nor_cached_before_its_signature(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H5 (security review): on 480aad9 CheckTx decoded every message of a transaction and cached it before the
    signature was checked: about 0.78 MB kept and 44 ms spent per free 64 KiB garbage transaction. Now a
    transaction's messages are decoded only after its signature verified, and only verified ones are cached."""
    from racenet.chain.module import Msg
    from racenet.chain.tx import decode_messages

    decoded: list[int] = []

    def counting(tx: SignedTx, registry: dict[str, type[Msg]]) -> tuple[Msg, ...]:
        decoded.append(len(tx.body.msgs))
        return decode_messages(tx, registry)

    monkeypatch.setattr("racenet.chain.app.decode_messages", counting)
    sends = [MsgSend(PrivateKey.generate().public_key.address, 1) for _ in range(AuthParams().max_msgs_per_tx)]
    for _ in range(20):
        forged = _other_signer(build_tx(ALICE, CHAIN_ID, 0, FEE, sends, memo="x" * 200))
        assert chain.app.check_tx(forged).code == Code.BAD_SIGNATURE
    assert decoded == [] and chain.app.verified_cache.entries == {}
    assert chain.app.check_tx(build_tx(ALICE, CHAIN_ID, 0, FEE, sends)).code == 0
    assert decoded == [len(sends)] and len(chain.app.verified_cache.entries) == 1


def test_fees_grow_with_bytes_and_messages(chain: Chain) -> None:
    """H6 (security review): on 480aad9 a 64 KiB transaction of 1,950 transfers paid the same flat 1,000 nicoin
    as one transfer. Now each transaction carries at most `max_msgs_per_tx` messages and pays per byte and per
    message: the fee that passes for one transfer is refused for 64."""
    one = [TO_BOB]
    many = [MsgSend(PrivateKey.generate().public_key.address, 1) for _ in range(AuthParams().max_msgs_per_tx)]
    least = _least_fee(one)
    assert chain.app.check_tx(build_tx(ALICE, CHAIN_ID, 0, least, many)).code == Code.INSUFFICIENT_FEE
    assert chain.app.check_tx(build_tx(ALICE, CHAIN_ID, 0, least, one)).code == 0
    size = len(build_tx(ALICE, CHAIN_ID, 0, FEE, many))
    assert BankParams().required_fee(size, [0] * len(many)) > 20 * least
