"""`racenet pool buy | sell | show`: the provider liquidity pool, icon sold in phases for bridged usdt (Appendix E)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from racenet.chain.codec import DecodeError, decode
from racenet.chain.errors import ChainError
from racenet.chain.jsonform import to_json
from racenet.chain.module import Msg
from racenet.chain.modules import bank, pool
from racenet.chain.modules.bank.denom import format_amount, format_usdt, parse_amount, parse_usdt
from racenet.chain.scalars import MAX_AMOUNT
from racenet.cli.chain import resolve_address
from racenet.cli.common import chain_client, echo_json, fail, home_option, json_option, load_key, node_option
from racenet.crypto.address import encode_address
from racenet.node.client import ChainClient
from racenet.node.sender import TxSender


@click.group("pool")
def pool_group() -> None:
    """The liquidity pool: buy icon for usdt at the phase price, sell icon back, show the sale."""


def _price(micro_per_icon: int) -> str:
    return f"{format_usdt(micro_per_icon)} per icon"


def _parse(parse: Callable[[str], int], text: str) -> int:
    """An amount parsed by `parse`, or a one-line error."""
    try:
        return parse(text)
    except ValueError as e:
        fail(str(e))


def _trade(client: ChainClient, home: Path, key_name: str, msg: Msg) -> tuple[pool.Trade, int, str]:
    """Send one pool message; what it traded, its block and its hash."""
    try:
        msg.validate()
    except ChainError as e:
        fail(e.message)
    key = load_key(home, key_name)
    outcome = TxSender(client, key).send([msg])
    try:
        return decode(pool.Trade, outcome.data), outcome.height, outcome.hash
    except DecodeError:
        fail(f"the node answered an unexpected result for transaction {outcome.hash}")


@pool_group.command()
@home_option
@node_option
@json_option
@click.option("--from", "key_name", required=True, help="Keyring key that pays usdt (and the fee, in icon).")
@click.option("--min", "min_icon", help="Least icon to receive, e.g. 1500icon  [default: what the pool gives now]")
@click.argument("amount")
def buy(home: Path, node: str, as_json: bool, key_name: str, min_icon: str | None, amount: str) -> None:
    """Pay up to AMOUNT, like 25usdt or 300uusdt, for icon at the current phase prices.

    A purchase that sells a phase out goes on at the next phase's price. The chain refuses it if the icon it
    would give is less than --min, which by default is what the pool gives now (so a price rise in between
    refuses it). usdt the icon bought does not use stays yours."""
    usdt = _parse(parse_usdt, amount)
    with chain_client(node) as client:
        if min_icon is None:
            state, params = client.query(pool.STATE), client.query(pool.PARAMS)
            least = pool.quote_buy(params.phases, state.phase - 1, state.icon, usdt).icon
        else:
            least = _parse(parse_amount, min_icon)
        trade, height, tx_hash = _trade(client, home, key_name, pool.MsgBuy(usdt=usdt, min_icon=least))
    if as_json:
        echo_json({"hash": tx_hash, "height": height, "icon": trade.icon, "usdt": trade.usdt})
    else:
        click.echo(f"bought {format_amount(trade.icon)} for {format_usdt(trade.usdt)} in block {height}: {tx_hash}")


@pool_group.command()
@home_option
@node_option
@json_option
@click.option("--from", "key_name", required=True, help="Keyring key that sells its icon.")
@click.option("--min", "min_usdt", help="Least usdt to receive, e.g. 4.5usdt  [default: what the pool pays now]")
@click.argument("amount")
def sell(home: Path, node: str, as_json: bool, key_name: str, min_usdt: str | None, amount: str) -> None:
    """Sell AMOUNT of icon, like 1000icon, to the pool at the latest achieved price, paid in usdt (providers only).

    The chain refuses it if the pool holds too little usdt, or if it would pay less than --min (by default what
    it pays now). The icon refills the current phase."""
    nicoin = _parse(parse_amount, amount)
    with chain_client(node) as client:
        if min_usdt is None:
            least = min(pool.sale_value(client.query(pool.STATE).sell_price, nicoin), MAX_AMOUNT)
        else:
            least = _parse(parse_usdt, min_usdt)
        trade, height, tx_hash = _trade(client, home, key_name, pool.MsgSell(icon=nicoin, min_usdt=least))
    if as_json:
        echo_json({"hash": tx_hash, "height": height, "icon": trade.icon, "usdt": trade.usdt})
    else:
        click.echo(f"sold {format_amount(trade.icon)} for {format_usdt(trade.usdt)} in block {height}: {tx_hash}")


@pool_group.command("bridge-deposit")
@home_option
@node_option
@click.option("--from", "key_name", required=True, help="The bridge account's keyring key (the faucet on a devnet).")
@click.argument("deposit_id")
@click.argument("recipient")
@click.argument("amount")
def bridge_deposit(home: Path, node: str, key_name: str, deposit_id: str, recipient: str, amount: str) -> None:
    """Attest an external deposit as the bridge: mint AMOUNT, like 25usdt, to RECIPIENT (an address or key name).

    DEPOSIT_ID names the external deposit (e.g. eth:<tx hash>:<log index>, in lower case); each is credited once.
    """
    msg = pool.MsgBridgeDeposit(
        deposit_id=deposit_id, recipient=resolve_address(home, recipient), amount=_parse(parse_usdt, amount)
    )
    try:
        msg.validate()
    except ChainError as e:
        fail(e.message)
    with chain_client(node) as client:
        outcome = TxSender(client, load_key(home, key_name)).send([msg])
    click.echo(f"credited {format_usdt(msg.amount)} for {deposit_id} in block {outcome.height}: {outcome.hash}")


@pool_group.command()
@home_option
@node_option
@json_option
@click.option("--account", help="Also show the usdt of this address or key name.")
def show(home: Path, node: str, as_json: bool, account: str | None) -> None:
    """The open phase, its price and what is left in it, the pool's icon and usdt, and the schedule."""
    address = None if account is None else resolve_address(home, account)
    with chain_client(node) as client:
        state, params = client.query(pool.STATE), client.query(pool.PARAMS)
        holding = None if address is None else client.query(bank.USDT_BALANCE, address)
    if as_json:
        doc = {"state": to_json(state), "params": to_json(params)}
        if holding is not None:
            doc["account"] = to_json(holding)
        echo_json(doc)
        return
    if state.sold_out:
        click.echo(f"sold out: all {state.phases} phases are sold; icon sold back goes at {_price(state.sell_price)}")
    else:
        click.echo(f"phase {state.phase} of {state.phases} at {_price(state.price)}: {format_amount(state.left)} left")
        click.echo(f"providers sell back at {_price(state.sell_price)}")
    click.echo(f"the pool holds {format_amount(state.icon)} and {format_usdt(state.usdt)}")
    click.echo(f"bridge account: {encode_address(params.bridge) if params.bridge else 'none'}")
    if holding is not None:
        click.echo(f"{encode_address(holding.address)} holds {format_usdt(holding.amount)}")
    table = Table(title="phases")
    for column in ("phase", "icon", "price (usdt per icon)"):
        table.add_column(column)
    for number, phase in enumerate(params.phases, 1):
        mark = " (open)" if number == state.phase and not state.sold_out else ""
        table.add_row(f"{number}{mark}", format_amount(phase.size), format_usdt(phase.price))
    Console().print(table)
