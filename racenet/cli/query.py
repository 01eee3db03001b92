"""`racenet query …` and `racenet status`: read chain state through a node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from racenet.chain.modules.bank.denom import format_amount
from racenet.cli.chain import resolve_address
from racenet.cli.common import echo_json, fail, home_option, json_option
from racenet.cli.tx import node_option
from racenet.crypto.address import encode_address
from racenet.node.client import ChainClient, ClientError


def _query(node: str, path: str, data: bytes = b"") -> Any:
    client = ChainClient(node)
    try:
        return client.query(path, data)
    except ClientError as e:
        fail(str(e))
    finally:
        client.close()


@click.group()
def query() -> None:
    """Query chain state."""


@query.command("balance")
@home_option
@node_option
@json_option
@click.argument("account")
def balance(home: Path, node: str, as_json: bool, account: str) -> None:
    """Balance of ACCOUNT (address or key name)."""
    address = encode_address(resolve_address(home, account))
    value = _query(node, "bank/balance", address.encode())
    if as_json:
        echo_json(value)
    else:
        click.echo(f"{address}: {format_amount(value['amount'])} ({value['amount']} nicoin)")


@query.command("account")
@home_option
@node_option
@click.argument("account")
def account(home: Path, node: str, account: str) -> None:
    """Public key and next sequence of ACCOUNT (JSON)."""
    address = encode_address(resolve_address(home, account))
    echo_json(_query(node, "auth/account", address.encode()))


@query.command("rewards")
@home_option
@node_option
@json_option
@click.argument("account")
def rewards(home: Path, node: str, as_json: bool, account: str) -> None:
    """Pending rewards of ACCOUNT (a node's earnings from executed requests, in nicoin)."""
    address = encode_address(resolve_address(home, account))
    value = _query(node, "inference/pending", address.encode())
    if as_json:
        echo_json(value)
    else:
        click.echo(f"{address}: {format_amount(value['amount'])} pending ({value['amount']} nicoin)")


@query.command("supply")
@node_option
def supply(node: str) -> None:
    """Total supply and total burned, in nicoin (JSON)."""
    echo_json(_query(node, "bank/supply"))


@query.command("raw")
@node_option
@click.argument("path")
@click.argument("data", default="")
def raw(node: str, path: str, data: str) -> None:
    """Any query PATH (e.g. bank/params, app/export) with optional DATA text (JSON)."""
    echo_json(_query(node, path, data.encode()))


@click.command()
@node_option
@json_option
def status(node: str, as_json: bool) -> None:
    """Chain id, height and app hash of a node."""
    client = ChainClient(node)
    try:
        s = client.status()
    except ClientError as e:
        fail(str(e))
    finally:
        client.close()
    if as_json:
        echo_json(s)
        return
    info = s["sync_info"]
    click.echo(
        f"chain {s['node_info']['network']}  height {info['latest_block_height']}  "
        f"app hash {info['latest_app_hash']}  time {info['latest_block_time']}"
    )
