"""`racenet keys`: create, list, show, back up, restore and delete keyring account keys."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from racenet.cli.common import echo_json, fail, home_option, json_option, read_passphrase
from racenet.crypto.keyring import KeyInfo, Keyring, KeyringError

BACKUP_WARNING = (
    "Write this backup phrase down and keep it somewhere safe. It is the only way to recover "
    "the key, and anyone who sees it controls the account."
)


@click.group()
def keys() -> None:
    """Manage the account keys in the local keyring."""


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn keyring, input and file errors into a one-line message and exit status 1."""
    try:
        yield
    except (KeyringError, ValueError, OSError) as e:
        fail(str(e))


def _keyring(home: Path) -> Keyring:
    """The keyring under a node home directory."""
    return Keyring(home / "keyring")


def _echo_info(info: KeyInfo) -> None:
    """Print a key's public info as `field: value` lines."""
    click.echo(f"name:    {info.name}")
    click.echo(f"address: {info.address}")
    click.echo(f"pubkey:  {info.public_key.raw.hex()}")


@keys.command()
@click.argument("name")
@home_option
@json_option
def add(name: str, home: Path, as_json: bool) -> None:
    """Create a new key NAME and print its address and backup phrase."""
    with _user_errors():
        info, mnemonic = _keyring(home).add(name, read_passphrase(confirm=True))
    if as_json:
        echo_json({**info.to_dict(), "mnemonic": mnemonic})
        return
    _echo_info(info)
    click.echo()
    click.echo(BACKUP_WARNING)
    click.echo()
    click.echo(mnemonic)


@keys.command(name="list")
@home_option
@json_option
def list_keys(home: Path, as_json: bool) -> None:
    """List the stored keys and their addresses."""
    with _user_errors():
        infos = _keyring(home).list()
    if as_json:
        echo_json([info.to_dict() for info in infos])
        return
    if not infos:
        click.echo(f"No keys in {home / 'keyring'}.")
    for info in infos:
        click.echo(f"{info.name}\t{info.address}")


@keys.command()
@click.argument("name")
@home_option
@json_option
def show(name: str, home: Path, as_json: bool) -> None:
    """Show the address and public key of key NAME."""
    with _user_errors():
        info = _keyring(home).show(name)
    if as_json:
        echo_json(info.to_dict())
    else:
        _echo_info(info)


@keys.command()
@click.argument("name")
@home_option
def export(name: str, home: Path) -> None:
    """Print the backup phrase of key NAME (asks for its passphrase)."""
    keyring = _keyring(home)
    with _user_errors():
        keyring.show(name)
        mnemonic = keyring.export_mnemonic(name, read_passphrase())
    click.echo(mnemonic)


@keys.command(name="import")
@click.argument("name")
@click.option(
    "--mnemonic-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the backup phrase from this file instead of stdin or a prompt.",
)
@home_option
@json_option
def import_key(name: str, mnemonic_file: Path | None, home: Path, as_json: bool) -> None:
    """Restore key NAME from its 24-word backup phrase."""
    with _user_errors():
        words = _read_mnemonic(mnemonic_file)
        info = _keyring(home).import_mnemonic(name, words, read_passphrase(confirm=True))
    if as_json:
        echo_json(info.to_dict())
    else:
        click.echo(f"Imported key {info.name!r}: {info.address}")


def _read_mnemonic(mnemonic_file: Path | None) -> str:
    """The backup phrase from a file, piped stdin, or a hidden prompt, in that order."""
    if mnemonic_file is not None:
        return mnemonic_file.read_text(encoding="utf-8")
    if not sys.stdin.isatty():
        return sys.stdin.read()
    return str(click.prompt("Backup phrase (24 words)", hide_input=True))


@keys.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@home_option
def delete(name: str, yes: bool, home: Path) -> None:
    """Delete key NAME from the keyring (only its backup phrase can restore it)."""
    keyring = _keyring(home)
    with _user_errors():
        info = keyring.show(name)
    if not yes:
        click.confirm(
            f"Delete key {name!r} ({info.address})? Without its backup phrase it is lost.",
            abort=True,
        )
    with _user_errors():
        keyring.delete(name)
    click.echo(f"Deleted key {name!r}.")
