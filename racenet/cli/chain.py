"""`racenet init`, `racenet start` and `racenet genesis …`: create and run a node."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType

import click

from racenet.chain.genesis import Genesis, GenesisFileError, load_genesis
from racenet.chain.modules.bank import Balance
from racenet.chain.modules.bank.denom import format_amount, parse_amount
from racenet.cli.common import fail, home_option
from racenet.crypto.address import decode_address, encode_address
from racenet.crypto.keyring import Keyring, KeyringError


def genesis_path(home: Path) -> Path:
    """Where a node home keeps its genesis file."""
    return home / "config" / "genesis.json"


@click.command()
@home_option
@click.option("--chain-id", default="racenet-local", show_default=True, help="Name of the new chain.")
def init(home: Path, chain_id: str) -> None:
    """Create a node home with a new genesis file."""
    path = genesis_path(home)
    if path.exists():
        fail(f"{path} already exists; choose another --home or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    Genesis(chain_id=chain_id, genesis_time=int(time.time())).save(path)
    click.echo(f"Initialized {chain_id} in {home}")
    click.echo(f"Fund an account with: racenet genesis add-account --home {home} <key-or-address> <amount>")


@click.group()
def genesis() -> None:
    """Edit the genesis file before the chain starts."""


def resolve_address(home: Path, name_or_address: str) -> bytes:
    """An address given as bech32 or as the name of a key in the keyring."""
    if name_or_address.startswith("race1"):
        try:
            return decode_address(name_or_address)
        except ValueError as e:
            fail(str(e))
    try:
        return decode_address(Keyring(home / "keyring").show(name_or_address).address)
    except KeyringError as e:
        fail(f"{name_or_address!r} is neither a race1… address nor a key name: {e}")


@genesis.command("add-account")
@home_option
@click.argument("account")
@click.argument("amount")
def add_account(home: Path, account: str, amount: str) -> None:
    """Give ACCOUNT (key name or address) a genesis balance of AMOUNT (e.g. 1000icon)."""
    try:
        nicoin = parse_amount(amount)
        doc = load_genesis(genesis_path(home))
    except (ValueError, GenesisFileError) as e:
        fail(str(e))
    address = resolve_address(home, account)
    bank = doc.app_state.bank
    if any(b.address == address for b in bank.balances):
        fail(f"{encode_address(address)} already has a genesis balance")
    balances = (*bank.balances, Balance(address, nicoin))
    doc.app_state = replace(doc.app_state, bank=replace(bank, balances=balances))
    doc.save(genesis_path(home))
    click.echo(f"{encode_address(address)}: {format_amount(nicoin)}")


@click.command()
@home_option
@click.option("--rpc", default="127.0.0.1:26657", show_default=True, help="host:port for the RPC server.")
@click.option("--block-time", default=1.0, show_default=True, help="Seconds between blocks.")
def start(home: Path, rpc: str, block_time: float) -> None:
    """Run a single-validator chain on the embedded engine (Ctrl-C stops it cleanly)."""
    from racenet.node.embedded import EmbeddedNode
    from racenet.node.rpc_server import serve_rpc

    host, _, port = rpc.rpartition(":")
    try:
        node = EmbeddedNode(home, block_time)
    except (GenesisFileError, ValueError) as e:
        fail(str(e))
    try:
        server = serve_rpc(node, host or "127.0.0.1", int(port))
    except OSError as e:
        node.close()
        fail(f"cannot listen on {rpc}: {e}")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        node.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    click.echo(f"{node.app.chain_id}: height {node.app.height}, RPC on http://{rpc}", err=True)
    try:
        node.run()
    finally:
        server.shutdown()
        node.close()
        click.echo(f"stopped at height {node.app.height}", err=True)


CHECK_INVARIANTS_ENV = "RACENET_CHECK_INVARIANTS"
"""Set to 1 to assert every invariant (money conservation) after each commit; the test suites do."""


@click.command("app")
@home_option
@click.option("--abci", default="tcp://127.0.0.1:26658", show_default=True, help="ABCI address CometBFT connects to.")
def app_command(home: Path, abci: str) -> None:
    """Serve the state machine to a CometBFT node over ABCI (one per validator)."""
    from racenet.abci.server import run
    from racenet.chain.app import App
    from racenet.crypto.consensus_key import ConsensusKeyError, validator_pubkey
    from racenet.node.beacon_agent import BeaconAgent, BeaconKeyError, load_or_create_secret

    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    agent = None
    if (home / "config" / "priv_validator_key.json").exists():
        try:
            agent = BeaconAgent(load_or_create_secret(home), validator_pubkey(home))
        except (BeaconKeyError, ConsensusKeyError, OSError) as e:
            fail(str(e))
    app = App(data / "app.db", check_invariants=os.environ.get(CHECK_INVARIANTS_ENV) == "1", extender=agent)
    role = "validator with a beacon agent" if agent else "no validator key: no beacon agent"
    click.echo(f"racenet app at height {app.height}, ABCI on {abci} ({role})", err=True)
    try:
        run(app, abci)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    except OSError as e:
        fail(f"cannot serve ABCI on {abci}: {e}")
    finally:
        app.close()
