"""`racenet tx …`: sign transactions with a keyring key and broadcast them."""

from __future__ import annotations

from pathlib import Path

import click

from racenet.chain.modules.bank import Send
from racenet.chain.modules.bank.denom import format_amount, parse_amount
from racenet.cli.chain import resolve_address
from racenet.cli.common import echo_json, fail, home_option, json_option, read_passphrase
from racenet.crypto.keyring import Keyring, KeyringError
from racenet.node.client import DEFAULT_NODE, ChainClient, ClientError

node_option = click.option(
    "--node", default=DEFAULT_NODE, show_default=True, envvar="RACENET_NODE", help="RPC endpoint of a node."
)


@click.group()
def tx() -> None:
    """Sign and broadcast transactions."""


@tx.command("send")
@home_option
@node_option
@json_option
@click.option("--fee", default="1000nicoin", show_default=True, help="Fee paid to the network.")
@click.option("--memo", default="", help="Free text stored with the transaction.")
@click.option("--no-wait", is_flag=True, help="Return after CheckTx instead of waiting for a block.")
@click.argument("sender")
@click.argument("recipient")
@click.argument("amount")
def send(
    home: Path, node: str, as_json: bool, fee: str, memo: str, no_wait: bool, sender: str, recipient: str, amount: str
) -> None:
    """Send AMOUNT (e.g. 2.5icon) from key SENDER to RECIPIENT (address or key name)."""
    try:
        nicoin, fee_nicoin = parse_amount(amount), parse_amount(fee)
    except ValueError as e:
        fail(str(e))
    to = resolve_address(home, recipient)
    try:
        key = Keyring(home / "keyring").load(sender, read_passphrase())
    except KeyringError as e:
        fail(str(e))
    client = ChainClient(node)
    try:
        outcome = client.send(key, [Send(to, nicoin)], fee_nicoin, memo, wait=not no_wait)
    except ClientError as e:
        fail(str(e))
    finally:
        client.close()
    if as_json:
        echo_json({"hash": outcome.hash, "height": outcome.height, "code": outcome.code})
    elif no_wait:
        click.echo(f"accepted into the mempool: {outcome.hash}")
    else:
        click.echo(f"sent {format_amount(nicoin)} in block {outcome.height}: {outcome.hash}")
