"""Random bytes into check_tx and finalize_block: no exception escapes, no state changes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from racenet.chain.modules.bank import MsgSend
from racenet.chain.tx import build_tx
from tests.chain import CHAIN_ID, FEE, Chain, genesis_for, key

ALICE, BOB = key(1), key(2)
VALID = build_tx(ALICE, CHAIN_ID, 0, FEE, [MsgSend(BOB.public_key.address, 3)])


def _mutations() -> st.SearchStrategy[bytes]:
    """Random bytes, plus valid transactions with bytes flipped, cut or appended."""
    flipped = st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)).map(
        lambda p: VALID[: p[0]] + bytes([VALID[p[0]] ^ p[1]]) + VALID[p[0] + 1 :]
    )
    cut = st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n])
    appended = st.binary(min_size=1, max_size=8).map(lambda b: VALID + b)
    return st.one_of(st.binary(max_size=300), flipped, cut, appended)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    c = Chain.start(tmp_path_factory.mktemp("fuzz"), genesis_for([ALICE, BOB]))
    c.block()
    return c


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """A second chain fed only empty blocks, to compare against block by block."""
    c = Chain.start(tmp_path_factory.mktemp("twin"), genesis_for([ALICE, BOB]))
    c.block()
    return c


@settings(max_examples=300, deadline=None)
@given(raw=_mutations())
def test_check_tx_never_raises_nor_changes_state(chain: Chain, raw: bytes) -> None:
    before, pending = chain.state(), dict(chain.app.check_state.changes)
    assert chain.app.check_tx(raw).code != 0
    assert chain.state() == before
    assert chain.app.check_state.changes == pending


@settings(max_examples=150, deadline=None)
@given(txs=st.lists(_mutations(), min_size=1, max_size=4))
def test_finalize_block_never_raises_nor_changes_state(chain: Chain, twin: Chain, txs: list[bytes]) -> None:
    """A block of junk leaves exactly the state (and app hash) an empty block leaves."""
    result = chain.decided_block(*txs)
    assert all(r.code != 0 for r in result.tx_results)
    assert result.app_hash == twin.decided_block().app_hash
    assert chain.state() == twin.state()
