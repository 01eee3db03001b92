"""The node's transaction sender against the real chain, without sockets.

The genesis sets a minimum fee other than the default, so a sender that pays the chain's fee is told apart
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
from racenet.node.sender import TxSender
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, balances, key
from tests.nodefake import FakeChain

ALICE, BOB = key(1), key(2)
MIN_FEE = 1_234
assert MIN_FEE != FEE, "the test needs a fee other than the default"


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[FakeChain]:
    """A chain whose bank asks a minimum fee of `MIN_FEE`."""
    genesis = Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        app_state=AppState(bank=BankGenesis(params=BankParams(Amount(MIN_FEE)), balances=balances([ALICE]))),
    )
    made = FakeChain(tmp_path / "chain", genesis)
    yield made
    made.close()


def test_sender_recovers_from_a_sequence_used_elsewhere_and_pays_the_chain_fee(chain: FakeChain) -> None:
    """Another sender on the same account makes ours stale: ours re-reads the sequence and its next send lands.
    Every transaction pays the chain's `bank.params.min_fee`, read from the chain, not a built-in default."""
    ours, theirs = TxSender(chain.client(), ALICE), TxSender(chain.client(), ALICE)
    client = chain.client()
    start = client.query(bank.BALANCE, ALICE.public_key.address).amount
    ours.send([MsgSend(BOB.public_key.address, 1)])
    theirs.send([MsgSend(BOB.public_key.address, 2)])
    ours.send([MsgSend(BOB.public_key.address, 3)])
    assert client.query(auth.ACCOUNT, ALICE.public_key.address).sequence == 3 == ours.next_sequence
    assert client.query(bank.BALANCE, BOB.public_key.address).amount == 6, "all three transfers landed"
    assert client.query(bank.BALANCE, ALICE.public_key.address).amount == start - 6 - 3 * MIN_FEE
    assert ours.fee == theirs.fee == MIN_FEE
