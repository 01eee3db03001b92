"""Entry point of the `racenet` command."""

from __future__ import annotations

import logging

import click

from racenet import __version__
from racenet.cli.apikey import api_key
from racenet.cli.beacon import beacon
from racenet.cli.chain import app_command, genesis, init, start
from racenet.cli.devnet import devnet
from racenet.cli.finetune import fine_tune
from racenet.cli.gov import gov_command
from racenet.cli.keys import keys
from racenet.cli.node import node
from racenet.cli.pool import pool_group
from racenet.cli.price import price
from racenet.cli.provider import join, up
from racenet.cli.query import query, status
from racenet.cli.race import race
from racenet.cli.report import report
from racenet.cli.sim import sim
from racenet.cli.train import train_group
from racenet.cli.tx import tx


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="racenet")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """racenet: a decentralized AI network powered by a compute Race."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


for command in (
    init,
    start,
    app_command,
    genesis,
    keys,
    tx,
    query,
    status,
    devnet,
    join,
    up,
    node,
    api_key,
    race,
    beacon,
    price,
    gov_command,
    pool_group,
    report,
    train_group,
    fine_tune,
    sim,
):
    cli.add_command(command)


def main() -> None:
    """Run the CLI (console-script entry point)."""
    cli()
