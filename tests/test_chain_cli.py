"""`racenet init`, `genesis add-account`, `tx`, `query`: one-line errors, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from racenet.chain.genesis import load_genesis
from racenet.cli.main import cli


def run(*args: str) -> Result:
    return CliRunner(env={"RACENET_PASSPHRASE": "", "RACENET_HOME": None}).invoke(cli, list(args))


def assert_error(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_init_and_fund_by_address(tmp_path: Path) -> None:
    assert run("init", "--home", str(tmp_path), "--chain-id", "c1").exit_code == 0
    address = "race1y8lrrhap2j3xzcntlp2qgm7jyudhhm2t4gg5av"
    result = run("genesis", "add-account", "--home", str(tmp_path), address, "1.5icon")
    assert result.exit_code == 0, result.output
    g = load_genesis(tmp_path / "config" / "genesis.json")
    assert g.chain_id == "c1"
    assert g.app_state["bank"]["balances"] == [{"address": address, "amount": 1_500_000_000}]
    assert_error(run("genesis", "add-account", "--home", str(tmp_path), address, "1icon"), "already has")
    assert_error(run("init", "--home", str(tmp_path)), "already exists")


@pytest.mark.parametrize(
    "account, amount, message",
    [
        ("race1y8lrrhap2j3xzcntlp2qgm7jyudhhm2t4gg5aw", "1icon", "bad checksum"),
        ("nobody", "1icon", "neither"),
        ("race1y8lrrhap2j3xzcntlp2qgm7jyudhhm2t4gg5av", "1.0000000001icon", "whole number"),
        ("race1y8lrrhap2j3xzcntlp2qgm7jyudhhm2t4gg5av", "5 dollars", "unit"),
    ],
)
def test_add_account_rejects_bad_input(tmp_path: Path, account: str, amount: str, message: str) -> None:
    run("init", "--home", str(tmp_path))
    assert_error(run("genesis", "add-account", "--home", str(tmp_path), account, amount), message)


def test_unreachable_node_is_a_clear_error(tmp_path: Path) -> None:
    node = "http://127.0.0.1:9"
    assert_error(run("status", "--node", node), "cannot reach node")
    address = "race1y8lrrhap2j3xzcntlp2qgm7jyudhhm2t4gg5av"
    assert_error(run("query", "balance", "--node", node, address), "cannot reach node")


def test_start_without_genesis_says_run_init(tmp_path: Path) -> None:
    assert_error(run("start", "--home", str(tmp_path)), "racenet init")


def test_tx_send_with_unknown_key(tmp_path: Path) -> None:
    result = run("tx", "send", "--home", str(tmp_path), "ghost", "race1y8lrrhap2j3xzcntlp2qgm7jyudhhm2t4gg5av", "1")
    assert_error(result, "ghost")
