"""`racenet price vote | show`: the unit-of-compute price that Race weight holders vote (whitepaper Appendix J)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from racenet.chain.errors import ChainError
from racenet.chain.jsonform import to_json
from racenet.chain.modules import pricing
from racenet.chain.modules.bank.denom import format_amount, parse_amount
from racenet.chain.modules.pricing.types import check_unit_price
from racenet.cli.common import (
    address_text,
    chain_client,
    echo_json,
    fail,
    home_option,
    json_option,
    load_key,
    node_option,
    table_console,
    wide_option,
)
from racenet.node.sender import TxSender


@click.group()
def price() -> None:
    """The unit-of-compute price: providers' votes, the current price and every model's price per token."""


def _nicoin(amount: int) -> str:
    return f"{amount} nicoin ({format_amount(amount)})"


@price.command()
@home_option
@node_option
@json_option
@click.option("--from", "key_name", required=True, help="Keyring key of the Race weight holder who votes.")
@click.argument("amount")
def vote(home: Path, node: str, as_json: bool, key_name: str, amount: str) -> None:
    """Vote AMOUNT per unit of compute, like 2uicon or 1500nicoin; it replaces your previous vote.

    At the cycle's end the weighted median of all votes (by Race weight) becomes the next cycle's price."""
    try:
        nicoin = parse_amount(amount)
        check_unit_price(nicoin)
    except ValueError as e:
        fail(str(e))
    except ChainError as e:
        fail(e.message)
    key = load_key(home, key_name)
    with chain_client(node) as client:
        outcome = TxSender(client, key).send([pricing.MsgVotePrice(nicoin)])
    if as_json:
        echo_json({"hash": outcome.hash, "height": outcome.height, "price": nicoin})
    else:
        click.echo(f"voted {_nicoin(nicoin)} per unit of compute in block {outcome.height}: {outcome.hash}")


@price.command()
@node_option
@json_option
@wide_option
def show(node: str, as_json: bool, wide: bool) -> None:
    """The current unit price, each provider's vote and every model's price per token."""
    with chain_client(node) as client:
        current, votes, models = client.query(pricing.PRICE), client.query(pricing.VOTES), client.query(pricing.MODELS)
    if as_json:
        echo_json({"price": to_json(current), "votes": to_json(votes), "models": to_json(models)})
        return
    click.echo(f"unit price: {_nicoin(current.price)} per unit of compute (set for cycle {current.cycle})")
    click.echo(f"the votes now give: {_nicoin(votes.median)} (non-voters count at the current price)")
    if votes.votes:
        table = Table(title="votes")
        for column in ("provider", "price (nicoin)", "weight"):
            table.add_column(column)
        for v in votes.votes:
            table.add_row(address_text(wide)(v.address), str(v.price), str(v.weight))
        table_console(wide).print(table)
    else:
        click.echo("no votes yet")
    table = Table(title="models")
    for column in ("model", "units per token", "price per token (nicoin)"):
        table.add_column(column)
    for m in models.models:
        table.add_row(m.id, str(m.units_per_token), str(m.price_per_token))
    table_console(wide).print(table)
