"""`racenet node run`: the provider's daemon (the Race loop, and the API when `--api` is given)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from racenet.cli.common import chain_client, fail, home_option, node_option, read_passphrase
from racenet.crypto.keyring import Keyring, KeyringError
from racenet.node.client import ClientError
from racenet.node.sender import TxSender


@click.group()
def node() -> None:
    """Run the provider's node daemon."""


@node.command("run")
@home_option
@node_option
@click.option("--key", "key_name", required=True, help="Keyring key of the node's account (registered Race node).")
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the Race loop keeps its progress [default: HOME/race/KEY].",
)
@click.option(
    "--compute-budget",
    type=click.FloatRange(0.01, 1.0),
    default=1.0,
    show_default=True,
    help="Fraction of time the miner computes (the rest it rests).",
)
@click.option("--threads", type=click.IntRange(1, 256), help="CPU threads for torch [default: all cores].")
@click.option("--api", help="host:port to serve the OpenAI-compatible API on (and execute requests).")
def run(
    home: Path,
    node: str,
    key_name: str,
    state_dir: Path | None,
    compute_budget: float,
    threads: int | None,
    api: str | None,
) -> None:
    """Race every cycle with no manual step: mine, commit, reveal, validate others; serve the API (Ctrl-C stops)."""
    from racenet.node.daemon import Daemon

    try:
        key = Keyring(home / "keyring").load(key_name, read_passphrase())
    except KeyringError as e:
        fail(str(e))
    address = None
    if api is not None:
        host, _, port = api.rpartition(":")
        if not port.isdigit():
            fail(f"--api takes host:port, got {api!r}")
        address = (host or "127.0.0.1", int(port))
    try:
        daemon = Daemon(node, key, state_dir or home / "race" / key_name, compute_budget, address, threads)
    except ClientError as e:
        fail(str(e))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    click.echo(f"racing as {daemon.worker.address} against {node}" + (f", API on {api}" if api else ""), err=True)
    thread = threading.Thread(target=daemon.run, name="race")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    click.echo("stopped", err=True)


@node.command("register")
@home_option
@node_option
@click.option("--key", "key_name", required=True, help="Keyring key of the node's account.")
@click.option(
    "--cometbft-home",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The validator's CometBFT home (its config/priv_validator_key.json public key is read).",
)
def register(home: Path, node: str, key_name: str, cometbft_home: Path) -> None:
    """Join the Race: bind your account to your validator's consensus key (once)."""
    from racenet.chain.modules.race import MsgRegisterNode
    from racenet.devnet.cometbft import validator_pubkey
    from racenet.devnet.errors import DevnetError

    try:
        key = Keyring(home / "keyring").load(key_name, read_passphrase())
        consensus_key = validator_pubkey(cometbft_home)
    except (KeyringError, DevnetError) as e:
        fail(str(e))
    with chain_client(node) as client:
        outcome = TxSender(client, key).send([MsgRegisterNode(consensus_key)])
    click.echo(f"registered in block {outcome.height}; the node races from the next cycle")
