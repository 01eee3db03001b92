"""`racenet report`: a developer reports a wrong answer, paying the report fee, and the network re-verifies it."""

from __future__ import annotations

from pathlib import Path

import click

from racenet.chain.modules import verification
from racenet.chain.modules.bank.denom import format_amount
from racenet.chain.modules.verification import MsgReport
from racenet.cli.common import chain_client, echo_json, fail, home_option, json_option, load_key, node_option
from racenet.node.sender import TxSender


@click.command()
@home_option
@node_option
@json_option
@click.option("--from", "key_name", required=True, help="Keyring key of the developer who paid for the request.")
@click.argument("request_id")
def report(home: Path, node: str, as_json: bool, key_name: str, request_id: str) -> None:
    """Report that the answer to REQUEST_ID (hex, or the chatcmpl- id) is wrong: validators holding more than half
    of the weight re-check it. Right: the fee comes back with a bounty; wrong: the fee pays the verifiers."""
    try:
        raw_id = bytes.fromhex(request_id.removeprefix("chatcmpl-"))
    except ValueError:
        raw_id = b""
    if len(raw_id) != 32:
        fail(f"{request_id!r} is not a request id (64 hex digits, optionally after 'chatcmpl-')")
    key = load_key(home, key_name)
    with chain_client(node) as client:
        fee = client.query(verification.PARAMS).report_fee
        outcome = TxSender(client, key).send([MsgReport(raw_id)])
    if as_json:
        echo_json({"hash": outcome.hash, "height": outcome.height, "report_fee": int(fee)})
    else:
        click.echo(f"reported {raw_id.hex()} in block {outcome.height} (fee {format_amount(fee)}): {outcome.hash}")
