"""`racenet api-key create|list|show|revoke|balance|history`: API keys for OpenAI-compatible clients, paid from
your account.

An API key is a random bearer secret. The chain holds only its id (a hash), bound to your
account, a spend limit, an optional expiry height and the gateway nodes you chose: only those
nodes can open requests with it, and none of them can be the executor of a request it opens.
`balance` and `history` ask a node's API with the key itself (`$RACENET_API_KEY`), so they need no keyring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import httpx

from racenet.chain.jsonform import to_json
from racenet.chain.modules import inference
from racenet.chain.modules.bank.denom import format_amount, parse_amount
from racenet.chain.modules.inference import KeyRequests, MsgAuthorizeKey, MsgRevokeKey
from racenet.cli.common import (
    api_call,
    api_option,
    chain_client,
    echo_json,
    fail,
    home_option,
    json_option,
    key_option,
    load_key,
    node_option,
)
from racenet.crypto.address import decode_address, encode_address
from racenet.crypto.keyring import Keyring, KeyringError
from racenet.node.openai_format import ApiError
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import api_key_id_of, new_api_key

GATEWAY_TIMEOUT = 10.0


@click.group("api-key")
def api_key() -> None:
    """Create, list, show and revoke API keys (bearer tokens) that spend from an account, up to a limit."""


def _send(home: Path, node: str, sender_name: str, msg: MsgAuthorizeKey | MsgRevokeKey) -> None:
    key = load_key(home, sender_name)
    with chain_client(node) as client:
        TxSender(client, key).send([msg])


def gateway_address(gateway: str) -> bytes:
    """A gateway given as a `race1…` address, or as a node's API URL (its address is asked of it)."""
    if not gateway.startswith(("http://", "https://")):
        try:
            return decode_address(gateway)
        except ValueError as e:
            fail(f"gateway {gateway!r}: {e}")
    try:
        response = httpx.get(gateway.rstrip("/") + "/racenet/v1/node", timeout=GATEWAY_TIMEOUT)
        response.raise_for_status()
        return decode_address(str(response.json()["address"]))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        fail(f"could not ask {gateway} for its node address: {e}")


def _key_id(token_or_id: str) -> bytes:
    """An API key's id from its rk-… token or from the id's hex."""
    if token_or_id.startswith("rk-"):
        try:
            return api_key_id_of(token_or_id)
        except ApiError as e:
            fail(str(e))
    try:
        key_id = bytes.fromhex(token_or_id)
    except ValueError:
        key_id = b""
    if len(key_id) != 32:
        fail("give the API key (rk-…) or its 64-hex-digit id")
    return key_id


def _account(home: Path, name: str) -> bytes:
    """The address of keyring key `name` (or `name` itself if it is a race1… address): no passphrase needed."""
    if name.startswith("race1"):
        return decode_address(name)
    try:
        return decode_address(Keyring(home / "keyring").show(name).address)
    except KeyringError as e:
        fail(str(e))


@api_key.command("create")
@home_option
@node_option
@json_option
@click.option("--from", "sender", required=True, help="Key whose account pays for requests made with the API key.")
@click.option("--limit", default="100icon", show_default=True, help="Most the key may escrow in total.")
@click.option(
    "--gateway",
    "gateways",
    multiple=True,
    required=True,
    help="A node the key may be used at: its race1… address or its API URL (repeat for up to 8).",
)
@click.option("--expires-at", type=click.IntRange(min=0), default=0, help="Last block height + 1 (0: no expiry).")
def create(
    home: Path, node: str, as_json: bool, sender: str, limit: str, gateways: tuple[str, ...], expires_at: int
) -> None:
    """Create an API key for `Authorization: Bearer …` (e.g. the openai SDK's api_key)."""
    try:
        nicoin = parse_amount(limit)
    except ValueError as e:
        fail(str(e))
    addresses = tuple(dict.fromkeys(gateway_address(g) for g in gateways))
    token, key_id = new_api_key()
    msg = MsgAuthorizeKey(key_id=key_id, spend_limit=nicoin, expiry_height=expires_at, gateways=addresses)
    _send(home, node, sender, msg)
    if as_json:
        echo_json(
            {"api_key": token, "id": key_id.hex(), "limit": nicoin, "gateways": [encode_address(a) for a in addresses]}
        )
        return
    click.echo(token)
    click.echo(
        f"spends up to {format_amount(nicoin)} from {sender} at {', '.join(encode_address(a) for a in addresses)}; "
        f"keep it secret; see it with `racenet api-key show <key>`, revoke it with "
        f"`racenet api-key revoke --from {sender} <key>`",
        err=True,
    )


@api_key.command("list")
@home_option
@node_option
@json_option
@click.option("--from", "owner", required=True, help="Keyring key name or race1… address whose keys to list.")
def list_keys(home: Path, node: str, as_json: bool, owner: str) -> None:
    """Every API key an account authorized: id, limit, spent, expiry, state."""
    with chain_client(node) as client:
        found = client.query(inference.APIKEYS, _account(home, owner))
    if as_json:
        echo_json(to_json(found, inference.ApiKeys))
        return
    if not found.keys:
        click.echo("no API keys")
    for info in found.keys:
        k = info.key
        state = "revoked" if k.revoked else (f"expires at {k.expiry_height}" if k.expiry_height else "active")
        click.echo(
            f"{info.id.hex()}  limit {format_amount(k.spend_limit)}  spent {format_amount(k.spent)}  "
            f"requests {k.requests}  {state}"
        )


@api_key.command("show")
@node_option
@json_option
@click.argument("key")
def show(node: str, as_json: bool, key: str) -> None:
    """An API key's record and every request charged to it that the chain still keeps (KEY: rk-… or its id)."""
    key_id = _key_id(key)
    with chain_client(node) as client:
        record = client.query(inference.APIKEY, key_id)
        if record is None:
            fail("no API key with this id on chain")
        listed = client.query(inference.KEY_REQUESTS, key_id)
    if as_json:
        echo_json({"id": key_id.hex(), "key": to_json(record, inference.ApiKey), "requests": _requests_json(listed)})
        return
    click.echo(f"id        {key_id.hex()}")
    click.echo(f"account   {encode_address(record.developer)}")
    click.echo(f"limit     {format_amount(record.spend_limit)} (spent {format_amount(record.spent)})")
    click.echo(f"gateways  {', '.join(encode_address(g) for g in record.gateways)}")
    click.echo(f"state     {'revoked' if record.revoked else 'active'}; expiry {record.expiry_height or 'none'}")
    for item in listed.requests:
        if item.receipt is not None:
            r = item.receipt
            click.echo(f"  {item.id.hex()}  {r.status}  cost {format_amount(r.cost)}  at height {r.height}")
        elif item.request is not None:
            click.echo(f"  {item.id.hex()}  open  escrow {format_amount(item.request.escrow)}")


def _requests_json(listed: KeyRequests) -> Any:
    return to_json(listed, KeyRequests)["requests"]


@api_key.command("revoke")
@home_option
@node_option
@click.option("--from", "sender", required=True, help="Key whose account the API key spends from.")
@click.argument("key")
def revoke(home: Path, node: str, sender: str, key: str) -> None:
    """Revoke an API key for good (KEY: the rk-… string or its id)."""
    _send(home, node, sender, MsgRevokeKey(_key_id(key)))
    click.echo("revoked")


@api_key.command("balance")
@api_option
@key_option
@json_option
def balance(api: str, api_key: str, as_json: bool) -> None:
    """The key's account balance, its limit and what it spent (`GET /v1/key`), in the key's own name."""
    data = api_call(api, api_key, "GET", "/key")["data"]
    if as_json:
        echo_json(data)
        return
    state = "revoked" if data["revoked"] else "active"
    click.echo(f"key       {data['id']}  ({state}, {data['requests']} requests)")
    click.echo(f"account   {data['account']}  balance {format_amount(data['balance'])}")
    click.echo(f"limit     {format_amount(data['limit'])}  spent {format_amount(data['spent'])}")
    click.echo(f"spendable {format_amount(data['spendable'])}")


@api_key.command("history")
@api_option
@key_option
@json_option
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many requests.")
def history(api: str, api_key: str, as_json: bool, limit: int) -> None:
    """The requests charged to the key, newest first (`GET /v1/key/requests`): status, tokens and cost."""
    data = api_call(api, api_key, "GET", "/key/requests", params={"limit": limit})["data"]
    if as_json:
        echo_json(data)
        return
    if not data:
        click.echo("no requests")
    for item in data:
        if item["status"] == "open":
            click.echo(f"{item['id'][:16]}  open      escrow {format_amount(item['escrow'])}  {item['model']}")
            continue
        tokens = f"{item['prompt_tokens']}+{item['completion_tokens']} tok"
        click.echo(f"{item['id'][:16]}  {item['status']:<8}  {format_amount(item['cost'])}  {tokens}  {item['model']}")
