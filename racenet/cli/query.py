"""`racenet query …` and `racenet status`: read chain state through a node."""

from __future__ import annotations

from pathlib import Path

import click

from racenet.chain.jsonform import to_json
from racenet.chain.modules import auth, bank, inference, tokenomics, verification
from racenet.chain.modules.bank.denom import format_amount
from racenet.cli.chain import resolve_address
from racenet.cli.common import chain_client, echo_json, home_option, json_option, node_option
from racenet.crypto.address import encode_address


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
    address = resolve_address(home, account)
    with chain_client(node) as client:
        value = client.query(bank.BALANCE, address)
    if as_json:
        echo_json(to_json(value))
    else:
        click.echo(f"{encode_address(address)}: {format_amount(value.amount)} ({value.amount} nicoin)")


@query.command("account")
@home_option
@node_option
@click.argument("account")
def account(home: Path, node: str, account: str) -> None:
    """Public key and next sequence of ACCOUNT (JSON)."""
    address = resolve_address(home, account)
    with chain_client(node) as client:
        echo_json(to_json(client.query(auth.ACCOUNT, address)))


@query.command("rewards")
@home_option
@node_option
@json_option
@click.argument("account")
def rewards(home: Path, node: str, as_json: bool, account: str) -> None:
    """Pending rewards of ACCOUNT (a node's earnings from executed requests, in nicoin)."""
    address = resolve_address(home, account)
    with chain_client(node) as client:
        value = client.query(inference.PENDING, address)
    if as_json:
        echo_json(to_json(value))
    else:
        click.echo(f"{encode_address(address)}: {format_amount(value.amount)} pending ({value.amount} nicoin)")


@query.command("reputation")
@home_option
@node_option
@json_option
@click.argument("node_account", metavar="NODE")
def reputation(home: Path, node: str, as_json: bool, node_account: str) -> None:
    """Reputation of NODE (address or key name) and the probability that each of its tasks is checked."""
    address = resolve_address(home, node_account)
    with chain_client(node) as client:
        value = client.query(verification.REPUTATION, address)
    if as_json:
        echo_json(to_json(value))
    else:
        percent = value.check_ppm / 10_000
        click.echo(f"{encode_address(address)}: reputation {value.reputation}, tasks checked with p = {percent:g}%")


@query.command("supply")
@node_option
def supply(node: str) -> None:
    """Total supply and total burned, in nicoin (JSON)."""
    with chain_client(node) as client:
        echo_json(to_json(client.query(bank.SUPPLY)))


@query.command("tokenomics")
@node_option
@json_option
def tokenomics_status(node: str, as_json: bool) -> None:
    """Subsidy phase and rate, core incentive issued, fees until the next phase, today's minimum issuance, the
    training fund and the supply (docs/tokenomics.md)."""
    with chain_client(node) as client:
        value = client.query(tokenomics.STATUS)
    if as_json:
        echo_json(to_json(value))
        return
    if value.phase > tokenomics.PHASES:
        click.echo(f"phase: all {tokenomics.PHASES} done, the core incentive is issued (no more subsidy)")
    else:
        rate = f"{value.subsidy_bps // 100}.{value.subsidy_bps % 100:02d}%"
        click.echo(f"phase: {value.phase} of {tokenomics.PHASES}, subsidy {rate} of what providers receive")
        click.echo(f"fees to the next phase: {format_amount(value.fees_to_next_phase)}")
    click.echo(f"core incentive issued: {format_amount(value.minted)} of {format_amount(tokenomics.CORE_INCENTIVE)}")
    click.echo(
        f"day {value.day}: minimum issuance {format_amount(value.minimum_today)}, "
        f"issued by fees so far {format_amount(value.issued_today)}"
    )
    click.echo(f"training fund ({value.training_fund_percent}% of revenue): {format_amount(value.training_fund)}")
    click.echo(f"supply: {format_amount(value.supply)}, burned {format_amount(value.burned)}")


@query.command("raw")
@node_option
@click.argument("path")
@click.argument("data", default="")
def raw(node: str, path: str, data: str) -> None:
    """Any query PATH (e.g. bank/params, app/export) with optional DATA text (JSON)."""
    with chain_client(node) as client:
        echo_json(client.query_raw(path, data.encode()))


@click.command()
@node_option
@json_option
def status(node: str, as_json: bool) -> None:
    """Chain id, height and app hash of a node."""
    with chain_client(node) as client:
        s = client.status()
    if as_json:
        echo_json(s)
        return
    info = s["sync_info"]
    click.echo(
        f"chain {s['node_info']['network']}  height {info['latest_block_height']}  "
        f"app hash {info['latest_app_hash']}  time {info['latest_block_time']}"
    )
