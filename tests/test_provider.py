"""`racenet join` and `racenet up` without a network: the home join writes, its refusals, and the supervisor's
restarts (a real process that keeps exiting), its backoff and its order of starting."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import Result

from racenet.chain.genesis import load_genesis
from racenet.cli.chain import genesis_path
from racenet.crypto.keyring import Keyring
from racenet.devnet import process
from racenet.provider.home import ProviderConfig, cometbft_home, config_path, load_config
from racenet.provider.supervisor import Supervisor
from tests.test_chain_cli import run

PEER = "0123456789abcdef0123456789abcdef01234567@127.0.0.1:26656"


def network_genesis(tmp_path: Path) -> Path:
    """A genesis file of a network (made by `racenet init`)."""
    home = tmp_path / "network"
    assert run("init", "--home", str(home), "--chain-id", "racenet-test").exit_code == 0
    return genesis_path(home)


def join(home: Path, genesis: Path, *extra: str) -> Result:
    return run("join", "--home", str(home), "--genesis", str(genesis), *extra)


def config_toml(home: Path) -> str:
    return (cometbft_home(home) / "config" / "config.toml").read_text()


def test_join_writes_a_home_for_the_network(tmp_path: Path) -> None:
    genesis, home = network_genesis(tmp_path), tmp_path / "provider"
    result = join(home, genesis, "--peer", PEER, "--host", "127.0.0.1", "--base-port", "30000", "--json")
    assert result.exit_code == 0, result.output
    joined = json.loads(result.output)
    assert joined["chain_id"] == "racenet-test" and len(joined["mnemonic"].split()) == 24
    assert joined["peer"] == f"{joined['node_id']}@127.0.0.1:30000" and joined["api"] == "http://127.0.0.1:30003"
    assert [k.address for k in Keyring(home / "keyring").list()] == [joined["account"]]
    assert (cometbft_home(home) / "config" / "genesis.json").read_bytes() == genesis.read_bytes()
    assert load_genesis(cometbft_home(home) / "config" / "genesis.json").chain_id == "racenet-test"
    toml = config_toml(home)
    for line in (
        f'persistent_peers = "{PEER}"',
        'proxy_app = "tcp://127.0.0.1:30002"',
        'laddr = "tcp://127.0.0.1:30001"',
        'external_address = "127.0.0.1:30000"',
        "addr_book_strict = false",
    ):
        assert line in toml
    config = load_config(home)
    assert (config.key, config.base_port, config.peers, config.compute_budget) == ("provider", 30000, (PEER,), 1.0)


def test_join_keeps_rpc_on_loopback_and_a_public_address_book_strict(tmp_path: Path) -> None:
    genesis, home = network_genesis(tmp_path), tmp_path / "provider"
    peer = PEER.replace("127.0.0.1", "seed.racenet.example")
    result = join(home, genesis, "--peer", peer, "--public-host", "node.example.net")
    assert result.exit_code == 0, result.output
    toml = config_toml(home)
    assert 'laddr = "tcp://0.0.0.0:26656"' in toml and 'laddr = "tcp://127.0.0.1:26657"' in toml
    assert 'external_address = "node.example.net:26656"' in toml
    assert "addr_book_strict = true" in toml and "allow_duplicate_ip = false" in toml
    assert "next: fund the account, then `racenet up" in result.output


def test_join_reuses_an_existing_key(tmp_path: Path) -> None:
    genesis, home = network_genesis(tmp_path), tmp_path / "provider"
    info, _ = Keyring(home / "keyring").add("mine", "")
    result = join(home, genesis, "--peer", PEER, "--host", "127.0.0.1", "--key", "mine", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["account"] == info.address and "mnemonic" not in json.loads(result.output)


def test_join_refuses_a_home_that_holds_a_node(tmp_path: Path) -> None:
    genesis, home = network_genesis(tmp_path), tmp_path / "provider"
    assert join(home, genesis, "--peer", PEER, "--host", "127.0.0.1").exit_code == 0
    before = config_path(home).read_text()
    again = join(home, genesis, "--peer", PEER, "--host", "127.0.0.1", "--base-port", "31000")
    assert again.exit_code == 1 and "already holds a node" in again.output
    assert config_path(home).read_text() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--peer", "abc@127.0.0.1:26656", "--host", "127.0.0.1"], "is not ID@HOST:PORT"),
        (["--peer", PEER.replace("26656", "70000"), "--host", "127.0.0.1"], "is not ID@HOST:PORT"),
        (["--peer", PEER], "give --public-host"),
        (["--peer", PEER, "--host", "127.0.0.1", "--backend", "ollama"], "use 'transformers'"),
        (["--peer", PEER, "--host", "127.0.0.1", "--base-port", "65534"], "65534 is not in the range"),
    ],
)
def test_join_rejects_bad_input_in_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    home = tmp_path / "provider"
    result = join(home, network_genesis(tmp_path), *extra)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not config_path(home).exists()


def test_join_rejects_a_file_that_is_no_genesis(tmp_path: Path) -> None:
    bad = tmp_path / "genesis.json"
    bad.write_text("{not json")
    result = join(tmp_path / "provider", bad, "--peer", PEER, "--host", "127.0.0.1")
    assert result.exit_code == 1 and "is not valid JSON" in result.output


def test_up_without_a_home_says_join_first(tmp_path: Path) -> None:
    result = run("up", "--home", str(tmp_path / "nothing"))
    assert result.exit_code == 1 and "run `racenet join` first" in result.output


def test_the_supervisor_restarts_a_process_that_exits_with_a_growing_pause(tmp_path: Path) -> None:
    config = ProviderConfig("racenet-test", "provider", "p", "127.0.0.1", "127.0.0.1", 30100, (PEER,))
    key = Keyring(tmp_path / "keyring").add("provider", "")[0]
    lines: list[str] = []
    supervisor = Supervisor(tmp_path, config, Keyring(tmp_path / "keyring").load(key.name, ""), "", lines.append)
    app = supervisor.children["app"]
    app.argv = ["/bin/sh", "-c", "sleep 0.2; echo crashed; exit 3"]
    pauses = []
    for _ in range(3):
        supervisor.tend()
        record = app.record
        assert record is not None
        assert process.wait_gone(record, 10)
        supervisor.tend()
        assert app.record is None, "not restarted before its pause is over"
        pauses.append(app.not_before - time.monotonic())
        app.not_before = 0.0
    assert [round(p) for p in pauses] == [1, 2, 4]
    assert sum(line.startswith("app exited (see") and "crashed" in line for line in lines) == 3
    app.argv = [str(tmp_path / "no-such-program")]
    supervisor.tend()
    assert app.record is None and "app did not start" in lines[-1] and "restarting in 8s" in lines[-1]
    assert supervisor.children["cometbft"].record is None, "CometBFT waits for the App to listen"
    assert supervisor.children["node"].record is None, "the daemon waits for the registration"
    supervisor.stop_all()
