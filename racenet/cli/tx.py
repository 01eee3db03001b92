"""`racenet tx …`: sign transactions with a keyring key and broadcast them."""

from __future__ import annotations

from pathlib import Path

import click

from racenet.chain.modules.bank import MsgSend
from racenet.chain.modules.bank.denom import format_amount, parse_amount
from racenet.cli.chain import resolve_address
from racenet.cli.common import chain_client, echo_json, fail, home_option, json_option, load_key, node_option
from racenet.node.sender import TxSender


@click.group()
def tx() -> None:
    """Sign and broadcast transactions."""


@tx.command("send")
@home_option
@node_option
@json_option
@click.option(
    "--fee", help="Fee paid to the network (e.g. 2000nicoin)  [default: what the chain's fee schedule asks for this tx]"
)
@click.option("--memo", default="", help="Free text stored with the transaction.")
@click.option("--no-wait", is_flag=True, help="Return after CheckTx instead of waiting for a block.")
@click.argument("sender")
@click.argument("recipient")
@click.argument("amount")
def send(
    home: Path,
    node: str,
    as_json: bool,
    fee: str | None,
    memo: str,
    no_wait: bool,
    sender: str,
    recipient: str,
    amount: str,
) -> None:
    """Send AMOUNT (e.g. 2.5icon) from key SENDER to RECIPIENT (address or key name)."""
    try:
        nicoin = parse_amount(amount)
        fee_nicoin = None if fee is None else parse_amount(fee)
    except ValueError as e:
        fail(str(e))
    to = resolve_address(home, recipient)
    key = load_key(home, sender)
    with chain_client(node) as client:
        txs = TxSender(client, key, fee_nicoin)
        if no_wait:
            hash_hex, height = txs.broadcast([MsgSend(to, nicoin)], memo), 0
        else:
            outcome = txs.send([MsgSend(to, nicoin)], memo)
            hash_hex, height = outcome.hash, outcome.height
    if as_json:
        echo_json({"hash": hash_hex, "height": height, "code": 0})
    elif no_wait:
        click.echo(f"accepted into the mempool: {hash_hex}")
    else:
        click.echo(f"sent {format_amount(nicoin)} in block {height}: {hash_hex}")
