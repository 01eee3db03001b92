"""A provider joins a running 4-validator devnet from the genesis file and one peer address only: `racenet join`
prepares its home, `racenet up` runs it; it block-syncs, registers, races, serves, and has voting power after
the next cycle. Its supervisor restarts a process that dies and stops all three on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from racenet.chain.modules import inference, race
from racenet.chain.modules.bank import MsgSend
from racenet.chain.modules.bank.denom import NICOIN_PER
from racenet.cli.main import cli
from racenet.crypto.address import decode_address
from racenet.crypto.keyring import Keyring
from racenet.devnet import DEVNET_PASSPHRASE, FAUCET_KEY, Devnet, cometbft
from racenet.devnet.commands import racenet_executable
from racenet.devnet.network import port_in_use
from racenet.devnet.state import Ports
from racenet.node.client import ChainClient, ClientError
from racenet.node.registration import is_registered
from racenet.node.sender import TxSender
from racenet.provider.home import cometbft_home
from tests.network.conftest import running_devnet
from tests.network.netutil import free_base_port, validator_powers, wait_for

pytestmark = pytest.mark.network

BUDGETS = "0.25,0.25,0.25,0.25"
"""The four validators race (their daemons vote on the newcomer's Race claim) without taking both cores."""
FUNDING = 100 * NICOIN_PER["icon"]
STARTED = re.compile(r"(\w+) started \(PID (\d+)\)")


@pytest.fixture(scope="module")
def join_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_devnet(tmp_path_factory, "join", BUDGETS) as directory:
        yield directory


def started(log: Path) -> dict[str, list[int]]:
    """Each process kind's PIDs, in the order the supervisor started them."""
    pids: dict[str, list[int]] = {}
    for kind, pid in STARTED.findall(log.read_text()):
        pids.setdefault(kind, []).append(int(pid))
    return pids


def test_a_fifth_node_joins_from_the_genesis_file_and_one_peer(join_dir: Path, tmp_path: Path) -> None:
    net = Devnet.open(join_dir)
    node1 = net.state.nodes[0]
    client = ChainClient(node1.rpc_url, timeout=10)
    home, base = tmp_path / "provider", free_base_port(1)
    genesis = net.state.home(node1) / "config" / "genesis.json"
    env = {"RACENET_PASSPHRASE": DEVNET_PASSPHRASE}
    args = ["join", "--home", str(home), "--genesis", str(genesis), "--peer", node1.peer_address]
    args += ["--host", "127.0.0.1", "--base-port", str(base), "--threads", "1", "--json"]
    result = CliRunner(env=env).invoke(cli, args)
    assert result.exit_code == 0, result.output
    joined = json.loads(result.output)
    account = decode_address(joined["account"])
    ports = Ports.for_node(base, 1)
    assert joined["chain_id"] == net.state.chain_id and joined["api"] == f"http://127.0.0.1:{ports.api}"

    faucet = Keyring(join_dir / "keyring").load(FAUCET_KEY, DEVNET_PASSPHRASE)
    TxSender(client, faucet).send([MsgSend(account, FUNDING)])

    log = tmp_path / "up.log"
    with log.open("w") as out:
        supervisor = subprocess.Popen(
            [str(racenet_executable()), "up", "--home", str(home)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    provider = ChainClient(f"http://127.0.0.1:{ports.rpc}", timeout=10)
    try:
        wait_for("the fifth node to sync", lambda: synced(provider, client), timeout=180)
        wait_for("the fifth node to register", lambda: is_registered(client, account) or None, timeout=180)
        pub_key = cometbft.validator_pubkey(cometbft_home(home))
        power = wait_for("voting power for the fifth node", lambda: power_of(client, pub_key), timeout=420)
        assert power > 0
        outcome = next(n for n in client.query(race.NODES).nodes if n.address == account).last_outcome
        assert outcome is not None and outcome.weight > 0, "its power is Race weight it earned"
        servers = client.query(inference.SERVERS, "SmolLM2-135M-Instruct").servers
        assert any(s.address == account and s.endpoint == joined["api"] for s in servers), "it serves"
        models = httpx.get(f"{joined['api']}/v1/models", timeout=30).json()
        assert "SmolLM2-135M-Instruct" in {m["id"] for m in models["data"]}

        daemon = started(log)["node"][-1]
        os.kill(daemon, signal.SIGKILL)
        wait_for("the supervisor to restart the daemon", lambda: len(started(log).get("node", [])) > 1, timeout=60)
        assert "node exited (see" in log.read_text()
        height = provider.height()
        wait_for("blocks after the restart", lambda: provider.height() > height + 3 or None, timeout=60)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(timeout=90)
        provider.close()
        client.close()
        print(log.read_text(), file=sys.stderr)
    assert code == 0
    assert not any(port_in_use(p) for p in (ports.p2p, ports.rpc, ports.abci, ports.api)), "all three stopped"


def synced(provider: ChainClient, network: ChainClient) -> bool | None:
    """Whether the provider's CometBFT has caught up with the network's height."""
    try:
        sync = provider.status()["sync_info"]
    except ClientError:
        return None
    return (not sync["catching_up"] and int(sync["latest_block_height"]) >= network.height() - 2) or None


def power_of(client: ChainClient, pub_key: bytes) -> int | None:
    """The fifth node's voting power in CometBFT's current validator set (None while it has none)."""
    return validator_powers(client, client.height()).get(pub_key) or None
