"""`racenet init`, `genesis add-account`, `tx`, `query`: one-line errors, never a traceback."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mnemonic import Mnemonic

from racenet.chain.genesis import load_genesis
from racenet.chain.modules.bank import Balance
from racenet.chain.modules.inference import api_key_id
from racenet.cli.main import cli
from racenet.crypto.address import decode_address, encode_address
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.node.client import ChainClient
from tests.chain import genesis_for, key
from tests.test_crash import free_port, start_node, wait_until_serving


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
    assert g.app_state.bank.balances == (Balance(decode_address(address), 1_500_000_000),)
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


@contextmanager
def running_node(home: Path, owner: PrivateKey, name: str) -> Iterator[str]:
    """A node of a one-account chain at `home`, with `owner` in its keyring as `name`; yields its RPC URL."""
    (home / "config").mkdir()
    genesis_for([owner]).save(home / "config" / "genesis.json")
    Keyring(home / "keyring").import_mnemonic(name, Mnemonic("english").to_mnemonic(owner.seed), "")
    port = free_port()
    node = start_node(home, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(ChainClient(url), 1)
        yield url
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)


def test_node_register_and_rewards_against_a_running_node(tmp_path: Path) -> None:
    """A provider joins the Race with its validator key and sees its (zero) pending rewards and its reputation."""
    provider, validator = key(5), key(6)
    cometbft = tmp_path / "cometbft"
    (cometbft / "config").mkdir(parents=True)
    pub = {"type": "tendermint/PubKeyEd25519", "value": base64.b64encode(validator.public_key.raw).decode()}
    private = base64.b64encode(validator.seed + validator.public_key.raw).decode()
    priv = {"type": "tendermint/PrivKeyEd25519", "value": private}
    (cometbft / "config" / "priv_validator_key.json").write_text(json.dumps({"pub_key": pub, "priv_key": priv}))
    with running_node(tmp_path, provider, "provider") as url:
        args = ["--home", str(tmp_path), "--node", url]
        result = run("node", "register", *args, "--key", "provider", "--cometbft-home", str(cometbft))
        assert result.exit_code == 0, result.output
        nodes = json.loads(run("query", "raw", "--node", url, "race/nodes").stdout)
        assert [n["consensus_pub_key"] for n in nodes["nodes"]] == [validator.public_key.raw.hex()]
        beacon_key = json.loads(
            run("query", "raw", "--node", url, "beacon/key", encode_address(provider.public_key.address)).stdout
        )
        assert (cometbft / "config" / "beacon_key.json").exists() and len(bytes.fromhex(beacon_key["key"])) == 48
        assert_error(run("node", "register", *args, "--key", "provider", "--cometbft-home", str(cometbft)), "already")
        rewards = json.loads(run("query", "rewards", *args, "provider", "--json").stdout)
        assert rewards["amount"] == 0
        reputation = json.loads(run("query", "reputation", *args, "provider", "--json").stdout)
        assert (reputation["reputation"], reputation["check_ppm"]) == (0, 1_000_000)  # a new node: every task
        assert "reputation 0, tasks checked with p = 100%" in run("query", "reputation", *args, "provider").output


def test_api_key_create_list_show_revoke_against_a_running_node(tmp_path: Path) -> None:
    """H2/L2: `racenet api-key` creates a bearer secret whose id alone goes on chain, bound to the named gateway;
    list and show read it back (nothing charged yet); revoke is final; bad input is a one-line error."""
    owner, gateway = key(7), key(8)
    with running_node(tmp_path, owner, "owner") as url:
        args = ["--home", str(tmp_path), "--node", url]
        gateway_address = encode_address(gateway.public_key.address)
        created = run(
            "api-key", "create", *args, "--from", "owner", "--limit", "2icon", "--gateway", gateway_address, "--json"
        )
        assert created.exit_code == 0, created.output
        doc = json.loads(created.stdout)
        token = doc["api_key"]
        assert token.startswith("rk-") and doc["id"] == api_key_id(bytes.fromhex(token[3:])).hex()
        assert doc["gateways"] == [gateway_address]
        listed = json.loads(run("api-key", "list", *args, "--from", "owner", "--json").stdout)
        assert [k["id"] for k in listed["keys"]] == [doc["id"]]
        assert listed["keys"][0]["key"]["spend_limit"] == 2 * 10**9
        shown = json.loads(run("api-key", "show", "--node", url, token, "--json").stdout)
        assert (shown["key"]["revoked"], shown["requests"]) == (False, [])
        assert token[3:] not in json.dumps(shown), "the secret never reaches the chain"
        assert run("api-key", "revoke", *args, "--from", "owner", token).exit_code == 0
        assert json.loads(run("api-key", "show", "--node", url, doc["id"], "--json").stdout)["key"]["revoked"]
        assert_error(run("api-key", "revoke", *args, "--from", "owner", token), "already revoked")
        assert_error(run("api-key", "show", "--node", url, "rk-zz"), "invalid API key")
        assert_error(run("api-key", "create", *args, "--from", "owner", "--gateway", "race1nothing"), "gateway")


def test_report_of_a_bad_or_unknown_request_is_a_one_line_error(tmp_path: Path) -> None:
    """`racenet report` refuses a malformed id before signing, and the chain's refusal of an unknown task is one
    line (the report fee is only taken for a finished task its developer reports)."""
    developer = key(9)
    with running_node(tmp_path, developer, "dev") as url:
        args = ["--home", str(tmp_path), "--node", url, "--from", "dev"]
        assert_error(run("report", *args, "not-hex"), "is not a request id")
        assert_error(run("report", *args, "chatcmpl-" + "ab" * 32), "no finished task")
