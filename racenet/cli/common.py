"""Options and error handling shared by every `racenet` subcommand."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from racenet.crypto.keyring import Keyring, KeyringError
from racenet.crypto.keys import PrivateKey
from racenet.node.client import DEFAULT_NODE, ChainClient, ClientError

DEFAULT_HOME = Path(os.environ.get("RACENET_HOME", Path.home() / ".racenet"))

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_HOME,
    show_default=True,
    envvar="RACENET_HOME",
    help="Node and keyring directory.",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")

node_option = click.option(
    "--node", default=DEFAULT_NODE, show_default=True, envvar="RACENET_NODE", help="RPC endpoint of a node."
)


class UserError(click.ClickException):
    """An expected failure (bad input, missing file, rejected tx): printed as one line, exit 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.message}", err=True)


def fail(message: str) -> NoReturn:
    """Stop the command with a one-line error message and exit status 1."""
    raise UserError(message)


def echo_json(value: Any) -> None:
    """Print a JSON document on stdout (sorted keys, for scripts)."""
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def read_passphrase(confirm: bool = False) -> str:
    """The keyring passphrase: $RACENET_PASSPHRASE if set, else asked on the terminal."""
    env = os.environ.get("RACENET_PASSPHRASE")
    if env is not None:
        return env
    return str(click.prompt("Keyring passphrase", hide_input=True, confirmation_prompt=confirm))


def load_key(home: Path, name: str) -> PrivateKey:
    """Keyring key `name` of `home`, unlocked with the passphrase; a one-line error if it cannot be."""
    try:
        return Keyring(home / "keyring").load(name, read_passphrase())
    except KeyringError as e:
        fail(str(e))


@contextmanager
def chain_client(node: str) -> Iterator[ChainClient]:
    """A client for the node's RPC, closed afterwards; a ClientError inside becomes a one-line error."""
    with ChainClient(node) as client:
        try:
            yield client
        except ClientError as e:
            fail(str(e))
