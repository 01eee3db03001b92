"""Genesis: CometBFT-format files, validation errors, and export → import round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from racenet.chain.app import GenesisError
from racenet.chain.genesis import Genesis, GenesisFileError, load_genesis, parse_genesis
from racenet.chain.modules.bank import MsgSend
from racenet.chain.types import InitChainRequest
from tests.chain import CHAIN_ID, GENESIS_TIME, Chain, genesis_for, key

ALICE, BOB = key(1), key(2)


def test_export_then_import_reproduces_state(tmp_path: Path) -> None:
    chain = Chain.start(tmp_path / "a", genesis_for([ALICE, BOB]))
    chain.block(
        chain.tx(ALICE, MsgSend(BOB.public_key.address, 123)), chain.tx(BOB, MsgSend(key(9).public_key.address, 7))
    )
    exported = chain.app.export_genesis()

    copy = Chain.start(tmp_path / "b", Genesis(CHAIN_ID, GENESIS_TIME, app_state=exported))
    copy.block()
    assert copy.app.export_genesis() == exported
    assert copy.balance(key(9)) == 7
    assert copy.app.bank.keeper.supply.get(copy.app.read_context()) == chain.app.bank.keeper.supply.get(
        chain.app.read_context()
    )
    assert copy.app.auth.keeper.account(copy.app.read_context(), ALICE.public_key.address).sequence == 1


def test_genesis_file_round_trip(tmp_path: Path) -> None:
    g = genesis_for([ALICE])
    g.save(tmp_path / "genesis.json")
    assert load_genesis(tmp_path / "genesis.json") == g


@pytest.mark.parametrize(
    "doc, message",
    [
        ([], "JSON object"),
        ({"chain_id": ""}, "chain_id"),
        ({"chain_id": "x", "genesis_time": "yesterday"}, "genesis_time"),
        ({"chain_id": "x", "genesis_time": "2026-01-01T00:00:00Z", "app_state": []}, "app_state"),
        (
            {"chain_id": "x", "genesis_time": "2026-01-01T00:00:00Z", "validators": [{"pub_key": {}}]},
            "validator",
        ),
    ],
)
def test_malformed_genesis_file(doc: object, message: str) -> None:
    with pytest.raises(GenesisFileError, match=message):
        parse_genesis(doc)


def test_missing_genesis_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(GenesisFileError, match="racenet init"):
        load_genesis(tmp_path / "genesis.json")


@pytest.mark.parametrize(
    "app_state, message",
    [
        ({"nonsense": {}}, "unknown module"),
        ({"bank": {"params": {"min_fee": -1}}}, "min_fee"),
        ({"bank": {"params": {"max_fee": 1}}}, "unknown"),
        ({"bank": {"balances": [{"address": "race1bad", "amount": 1}]}}, "invalid address"),
        ({"bank": {"balances": [{"address": "x", "amount": "1"}]}}, "bank"),
    ],
)
def test_bad_app_state_is_a_genesis_error(tmp_path: Path, app_state: dict[str, object], message: str) -> None:
    from racenet.chain.app import App

    app = App(tmp_path / "app.db")
    req = InitChainRequest(CHAIN_ID, GENESIS_TIME, 1, json.dumps(app_state).encode())
    with pytest.raises(GenesisError, match=message):
        app.init_chain(req)
    assert app.info().last_block_height == 0
