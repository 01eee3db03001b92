"""A provider's node home for an existing network: what `racenet join` writes and `racenet up` runs.

Layout of a provider home:

    <home>/provider.json        the network, the account key's name, addresses, ports and compute settings
    <home>/keyring/<key>.json   the node's account (created by `join` unless it exists)
    <home>/cometbft/config/     CometBFT config, consensus key, beacon key and the network's genesis.json
    <home>/cometbft/data/       CometBFT stores and the App's app.db
    <home>/race/                the daemon's per-cycle progress
    <home>/logs/                app.log, cometbft.log and node.log

The P2P port and the API listen on `host` (all interfaces by default) and are announced at `public_host`;
CometBFT's RPC and the ABCI socket stay on 127.0.0.1, where only the node's own processes use them.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from racenet.devnet import cometbft
from racenet.devnet.errors import DevnetError
from racenet.devnet.state import HOST as LOOPBACK
from racenet.devnet.state import Ports

CONFIG_FILE = "provider.json"
DEFAULT_BASE_PORT = 26656
"""P2P at the base port (CometBFT's usual 26656), then RPC, ABCI, API and training endpoint."""
PEER_PATTERN = re.compile(r"^(?P<id>[0-9a-f]{40})@(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
LOGS: tuple[str, ...] = ("app", "cometbft", "node")


class ProviderError(DevnetError):
    """A provider home cannot be created or run; the message says why and what to do."""


@dataclass(frozen=True)
class ProviderConfig:
    """Everything `racenet up` needs besides the key's passphrase."""

    chain_id: str
    key: str
    moniker: str
    host: str
    public_host: str
    base_port: int
    peers: tuple[str, ...]
    compute_budget: float = 1.0
    backend: str = "transformers"
    threads: int | None = None

    @property
    def ports(self) -> Ports:
        """P2P, RPC, ABCI and API ports, in that order from the base port."""
        return Ports.for_node(self.base_port, 1)

    @property
    def rpc_url(self) -> str:
        """The local CometBFT RPC the daemon and the supervisor talk to."""
        return f"http://{LOOPBACK}:{self.ports.rpc}"

    @property
    def api_url(self) -> str:
        """The URL developers and other nodes reach this node's API at (announced on chain)."""
        return f"http://{self.public_host}:{self.ports.api}"

    def to_json(self) -> dict[str, Any]:
        """The provider.json document."""
        return {**asdict(self), "peers": list(self.peers)}


def parse_peer(peer: str) -> tuple[str, str, int]:
    """(node id, host, port) of an `ID@HOST:PORT` peer address; ProviderError naming the expected form."""
    match = PEER_PATTERN.match(peer)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ProviderError(f"peer {peer!r} is not ID@HOST:PORT (ID: the 40 hex digits `cometbft show-node-id` prints)")
    return match["id"], match["host"].strip("[]"), int(match["port"])


def private_host(host: str) -> bool:
    """Whether a peer's host is a loopback or private IP address (a LAN or one machine's test network)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def config_path(home: Path) -> Path:
    """Where a provider home keeps its provider.json."""
    return home / CONFIG_FILE


def cometbft_home(home: Path) -> Path:
    """The provider's CometBFT home (also the App's data directory)."""
    return home / "cometbft"


def log_path(home: Path, kind: str) -> Path:
    """The log file of one of the node's processes."""
    return home / "logs" / f"{kind}.log"


def load_config(home: Path) -> ProviderConfig:
    """The provider.json of `home`; ProviderError if there is none or it is damaged."""
    path = config_path(home)
    try:
        doc = json.loads(path.read_text())
        return ProviderConfig(**{**doc, "peers": tuple(doc["peers"])})
    except FileNotFoundError as e:
        raise ProviderError(f"no provider home at {home}: run `racenet join` first") from e
    except (ValueError, TypeError, KeyError) as e:
        raise ProviderError(f"{path} is damaged ({e}); run `racenet join` again into an empty --home") from e


def cometbft_settings(config: ProviderConfig) -> cometbft.Settings:
    """config.toml for a full node of an existing network that becomes a validator once it earns Race weight."""
    ports = config.ports
    hosts = [parse_peer(p)[1] for p in config.peers]
    local = any(private_host(h) for h in hosts) or private_host(config.public_host)
    return {
        ("", "moniker"): config.moniker,
        ("", "proxy_app"): f"tcp://{LOOPBACK}:{ports.abci}",
        ("rpc", "laddr"): f"tcp://{LOOPBACK}:{ports.rpc}",
        ("p2p", "laddr"): f"tcp://{config.host}:{ports.p2p}",
        ("p2p", "external_address"): f"{config.public_host}:{ports.p2p}",
        ("p2p", "persistent_peers"): ",".join(config.peers),
        ("p2p", "pex"): True,
        ("p2p", "addr_book_strict"): not local,
        ("p2p", "allow_duplicate_ip"): local,
        ("tx_index", "indexer"): "kv",
        ("instrumentation", "prometheus"): False,
    }


def create_home(home: Path, config: ProviderConfig, genesis_file: Path) -> str:
    """Write a CometBFT home with the network's genesis and the config, and provider.json; returns the node id.

    Refuses a home that already holds a provider; removes what it wrote if it fails half way.
    """
    if config_path(home).exists() or cometbft_home(home).exists():
        raise ProviderError(f"{home} already holds a node; run `racenet up --home {home}` or choose another --home")
    binary = cometbft.find_cometbft()
    cometbft.check_version(binary)
    target = cometbft_home(home)
    try:
        cometbft.init_home(binary, target)
        shutil.copyfile(genesis_file, target / "config" / "genesis.json")
        cometbft.configure(target, cometbft_settings(config))
        node_id = cometbft.node_id(binary, target)
        config_path(home).write_text(json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return node_id
