"""`racenet api-key create|revoke`: API keys for OpenAI-compatible clients, paid from your account."""

from __future__ import annotations

import os
from pathlib import Path

import click

from racenet.chain.modules.bank.denom import format_amount, parse_amount
from racenet.chain.modules.inference import MsgAuthorizeKey, MsgRevokeKey
from racenet.cli.common import chain_client, echo_json, fail, home_option, json_option, load_key, node_option
from racenet.crypto.keys import PrivateKey
from racenet.node.openai_format import ApiError
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import api_key_for, key_from_api_key


@click.group("api-key")
def api_key() -> None:
    """Create and revoke API keys (bearer tokens) that spend from an account, up to a limit."""


def _send(home: Path, node: str, sender_name: str, msg: MsgAuthorizeKey | MsgRevokeKey) -> None:
    key = load_key(home, sender_name)
    with chain_client(node) as client:
        TxSender(client, key).send([msg])


@api_key.command("create")
@home_option
@node_option
@json_option
@click.option("--from", "sender", required=True, help="Key whose account pays for requests made with the API key.")
@click.option("--limit", default="100icon", show_default=True, help="Most the key may escrow in total.")
def create(home: Path, node: str, as_json: bool, sender: str, limit: str) -> None:
    """Create an API key for `Authorization: Bearer …` (e.g. the openai SDK's api_key)."""
    try:
        nicoin = parse_amount(limit)
    except ValueError as e:
        fail(str(e))
    session = PrivateKey(os.urandom(32))
    _send(home, node, sender, MsgAuthorizeKey(session.public_key.raw, nicoin))
    token = api_key_for(session.seed)
    if as_json:
        echo_json({"api_key": token, "public_key": session.public_key.raw.hex(), "limit": nicoin})
        return
    click.echo(token)
    click.echo(
        f"spends up to {format_amount(nicoin)} from {sender}; keep it secret, revoke it with "
        f"`racenet api-key revoke --from {sender} <key>`",
        err=True,
    )


@api_key.command("revoke")
@home_option
@node_option
@click.option("--from", "sender", required=True, help="Key whose account the API key spends from.")
@click.argument("token")
def revoke(home: Path, node: str, sender: str, token: str) -> None:
    """Revoke an API key (TOKEN is the rk-… string)."""
    try:
        session = key_from_api_key(token)
    except ApiError as e:
        fail(str(e))
    _send(home, node, sender, MsgRevokeKey(session.public_key.raw))
    click.echo("revoked")
