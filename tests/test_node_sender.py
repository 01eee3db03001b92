"""The node's transaction sender against the real chain, without sockets.

The genesis sets a fee schedule other than the default, so a sender that pays the chain's fee is told apart
from one that pays a constant.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis
from racenet.chain.modules import auth, bank
from racenet.chain.modules.bank import BankGenesis, MsgSend
from racenet.chain.modules.bank import Params as BankParams
from racenet.chain.scalars import Amount
from racenet.chain.tx import build_tx
from racenet.node.sender import TxSender
from tests.chain import CHAIN_ID, GENESIS_TIME, balances, key
from tests.nodefake import FakeChain

ALICE, BOB = key(1), key(2)
FEES = BankParams(min_fee=Amount(1_234), fee_per_byte=Amount(3), fee_per_message=Amount(7), fee_per_work=Amount(0))
assert BankParams() != FEES, "the test needs a fee schedule other than the default"


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[FakeChain]:
    """A chain whose bank asks the fees of `FEES`."""
    genesis = Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        app_state=AppState(bank=BankGenesis(params=FEES, balances=balances([ALICE]))),
    )
    made = FakeChain(tmp_path / "chain", genesis)
    yield made
    made.close()


def test_sender_recovers_from_a_sequence_used_elsewhere_and_pays_the_chain_fee(chain: FakeChain) -> None:
    """Another sender on the same account makes ours stale: ours re-reads the sequence and its next send lands.
    Every transaction pays what the chain's fee schedule (`bank.params`, read from the chain, not a built-in
    default) asks for its size: at most 10 bytes' worth (the fee varint) more than the least it may pay."""
    ours, theirs = TxSender(chain.client(), ALICE), TxSender(chain.client(), ALICE)
    client = chain.client()
    start = client.query(bank.BALANCE, ALICE.public_key.address).amount
    ours.send([MsgSend(BOB.public_key.address, 1)])
    theirs.send([MsgSend(BOB.public_key.address, 2)])
    ours.send([MsgSend(BOB.public_key.address, 3)])
    assert client.query(auth.ACCOUNT, ALICE.public_key.address).sequence == 3 == ours.next_sequence
    assert client.query(bank.BALANCE, BOB.public_key.address).amount == 6, "all three transfers landed"
    draft = build_tx(ALICE, CHAIN_ID, 0, 0, [MsgSend(BOB.public_key.address, 1)])
    fee = FEES.required_fee(len(draft) + 10, [0])
    assert client.query(bank.BALANCE, ALICE.public_key.address).amount == start - 6 - 3 * fee
    assert FEES.required_fee(len(draft), [0]) < fee <= FEES.required_fee(len(draft) + 10, [0])
