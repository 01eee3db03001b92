"""Options and error handling shared by every `racenet` subcommand."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx
from rich.console import Console

from racenet.crypto.address import encode_address
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

wide_option = click.option("--wide", is_flag=True, help="Full addresses and keys, tables as wide as they need.")

TABLE_WIDTH = 80
PIPED_WIDTH = 200

node_option = click.option(
    "--node", default=DEFAULT_NODE, show_default=True, envvar="RACENET_NODE", help="RPC endpoint of a node."
)


api_option = click.option(
    "--api",
    default="http://127.0.0.1:26659/v1",
    show_default=True,
    envvar="RACENET_API",
    help="The node API's base URL (ending in /v1).",
)

key_option = click.option("--api-key", envvar="RACENET_API_KEY", required=True, help="Your API key (rk-…).")

API_TIMEOUT = httpx.Timeout(120.0, connect=5.0)


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


def api_call(api: str, api_key: str, method: str, path: str, **kwargs: Any) -> Any:
    """One call of a node's API with an API key; exits with the API's error message on failure."""
    try:
        with httpx.Client(timeout=API_TIMEOUT, headers={"authorization": f"Bearer {api_key}"}) as http:
            response = http.request(method, api.rstrip("/") + path, **kwargs)
    except httpx.HTTPError as e:
        fail(f"cannot reach {api}: {e}")
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        fail(f"HTTP {response.status_code}: {message}")
    return response.json()


def short(text: str) -> str:
    """An address or key shortened to its start and end (`race1abcd…wxyz`), to fit 80-column tables."""
    return text if len(text) <= 15 else f"{text[:10]}…{text[-4:]}"


def short_address(address: bytes) -> str:
    """A bech32 address shortened for an 80-column table."""
    return short(encode_address(address))


def address_text(wide: bool) -> Callable[[bytes], str]:
    """How tables print an address: whole with --wide, else shortened."""
    return encode_address if wide else short_address


def table_console(wide: bool) -> Console:
    """stdout for tables: 80 columns, or with --wide the terminal's width (200 columns when piped)."""
    if not wide:
        return Console(width=TABLE_WIDTH)
    console = Console()
    return console if console.is_terminal else Console(width=PIPED_WIDTH)
