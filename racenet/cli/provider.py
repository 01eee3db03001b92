"""`racenet join` and `racenet up`: run a provider's node on its own machine (docs/provider.md)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType

import click

from racenet.chain.genesis import GenesisFileError, load_genesis
from racenet.cli.common import echo_json, fail, home_option, json_option, read_passphrase
from racenet.cli.node import BackendSpec, compute_budget_option, threads_option
from racenet.crypto.address import encode_address
from racenet.crypto.keyring import Keyring, KeyringError
from racenet.devnet.errors import DevnetError
from racenet.node.daemon import TRANSFORMERS
from racenet.provider.home import (
    DEFAULT_BASE_PORT,
    ProviderConfig,
    ProviderError,
    cometbft_home,
    create_home,
    load_config,
    parse_peer,
)
from racenet.provider.supervisor import Supervisor

ANY_ADDRESS = ("0.0.0.0", "::")
MAX_BASE_PORT = 65535 - 4


def _peer(ctx: click.Context, param: click.Parameter, peers: tuple[str, ...]) -> tuple[str, ...]:
    """Every --peer as given, checked to be ID@HOST:PORT."""
    for peer in peers:
        try:
            parse_peer(peer)
        except ProviderError as e:
            raise click.BadParameter(str(e)) from e
    return peers


@click.command("join")
@home_option
@click.option(
    "--genesis",
    "genesis_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The network's genesis.json (any member can hand it out: it is in every node's CometBFT config/).",
)
@click.option(
    "--peer",
    "peers",
    required=True,
    multiple=True,
    callback=_peer,
    help="ID@HOST:PORT of a node of the network to sync from (repeat for more); others are found through it.",
)
@click.option(
    "--key",
    "key_name",
    default="provider",
    show_default=True,
    help="Keyring key of the node's account (created if the keyring has none by that name).",
)
@click.option("--moniker", help="The node's name on the network [default: the key's name].")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on for peers and the API.")
@click.option("--public-host", help="Address other machines reach this one at [default: --host, unless it is any].")
@click.option(
    "--base-port",
    type=click.IntRange(1024, MAX_BASE_PORT),
    default=DEFAULT_BASE_PORT,
    show_default=True,
    help="P2P port; RPC, ABCI, API and training follow it (RPC and ABCI listen on 127.0.0.1 only).",
)
@compute_budget_option
@click.option(
    "--backend",
    type=BackendSpec(),
    default=TRANSFORMERS,
    show_default=True,
    help="What runs requests: `transformers` or `openai:<URL>` (see `racenet node run --help`).",
)
@threads_option
@json_option
def join(
    home: Path,
    genesis_file: Path,
    peers: tuple[str, ...],
    key_name: str,
    moniker: str | None,
    host: str,
    public_host: str | None,
    base_port: int,
    compute_budget: float,
    backend: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Prepare a node home for an existing network: CometBFT config and keys, the account, provider.json."""
    if public_host is None and host in ANY_ADDRESS:
        fail("give --public-host: the address other machines reach this one at (--host listens on every address)")
    try:
        chain_id = load_genesis(genesis_file).chain_id
    except GenesisFileError as e:
        fail(str(e))
    keyring = Keyring(home / "keyring")
    mnemonic = None
    try:
        if any(info.name == key_name for info in keyring.list()):
            account = encode_address(keyring.load(key_name, read_passphrase()).public_key.address)
        else:
            info, mnemonic = keyring.add(key_name, read_passphrase(confirm=True))
            account = info.address
    except KeyringError as e:
        fail(str(e))
    config = ProviderConfig(
        chain_id,
        key_name,
        moniker or key_name,
        host,
        public_host or host,
        base_port,
        peers,
        compute_budget,
        backend,
        threads,
    )
    try:
        node_id = create_home(home, config, genesis_file)
    except DevnetError as e:
        fail(str(e))
    summary = {
        "chain_id": chain_id,
        "account": account,
        "node_id": node_id,
        "peer": f"{node_id}@{config.public_host}:{config.ports.p2p}",
        "api": config.api_url,
        "home": str(home),
    }
    if as_json:
        echo_json({**summary, **({"mnemonic": mnemonic} if mnemonic else {})})
        return
    click.echo(f"joined {chain_id} as {config.moniker}: node {node_id}")
    click.echo(f"  account  {summary['account']}  (fund it: the registration pays a fee)")
    click.echo(f"  peer     {summary['peer']}  (others can join through this node)")
    click.echo(f"  API      {config.api_url}")
    if mnemonic:
        click.echo(f"backup phrase of the new key (write it down, it is shown once):\n{mnemonic}", err=True)
    click.echo(f"next: fund the account, then `racenet up --home {home}`")


@click.command("up")
@home_option
def up(home: Path) -> None:
    """Run the node of a home made by `racenet join`: App, CometBFT and daemon, restarted if they exit
    (Ctrl-C or SIGTERM stops all three)."""
    try:
        config = load_config(home)
        key = Keyring(home / "keyring").load(config.key, passphrase := read_passphrase())
    except (ProviderError, KeyringError) as e:
        fail(str(e))
    if not cometbft_home(home).is_dir():
        fail(f"{cometbft_home(home)} is missing; run `racenet join` again into an empty --home")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def echo(line: str) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {line}", err=True)

    try:
        Supervisor(home, config, key, passphrase, echo).run(stop)
    except DevnetError as e:
        fail(str(e))
