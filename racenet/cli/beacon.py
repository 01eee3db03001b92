"""`racenet beacon`: the random beacon's rounds and group keys, and offline verification of any past round."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from racenet.chain.jsonform import from_json, to_json
from racenet.chain.modules import beacon as chain_beacon
from racenet.chain.modules.beacon import Group, Round
from racenet.chain.modules.beacon.types import Groups
from racenet.chain.modules.beacon.verify import verify_chain
from racenet.cli.common import (
    address_text,
    chain_client,
    echo_json,
    fail,
    json_option,
    node_option,
    short,
    table_console,
    wide_option,
)
from racenet.crypto.address import encode_address


@click.group()
def beacon() -> None:
    """The random beacon: threshold BLS rounds, group keys and recorded faults."""


def _round_lines(r: Round) -> list[str]:
    return [
        f"round {r.round}: output {r.output.hex()}",
        f"  recorded at height {r.height} by group {r.epoch}; previous {r.previous.hex()}",
        f"  mix {r.mix.hex()}; signature {r.signature.hex()}",
    ]


@beacon.command()
@click.argument("round_number", metavar="[ROUND]", required=False, type=click.IntRange(min=1))
@node_option
@json_option
@wide_option
def show(round_number: int | None, node: str, as_json: bool, wide: bool) -> None:
    """The beacon's status, or one round's record."""
    with chain_client(node) as client:
        if round_number is not None:
            record = client.query(chain_beacon.ROUND, str(round_number))
            if record is None:
                fail(f"round {round_number} is not recorded (yet)")
            if as_json:
                echo_json(to_json(record))
                return
            click.echo("\n".join(_round_lines(record)))
            return
        status = client.query(chain_beacon.STATUS)
    if as_json:
        echo_json(to_json(status))
        return
    click.echo(f"height {status.height}: pending round {status.pending_round}")
    if status.latest is not None:
        click.echo("\n".join(_round_lines(status.latest)))
    group = status.group
    if group is None:
        click.echo("no group key yet: the genesis key generation is under way")
    else:
        click.echo(
            f"group {group.epoch} (active from height {group.active_from}): threshold {group.threshold} of "
            f"{sum(h.count for h in group.holders)} shares, {len(group.dealers)} dealers, key {group.public_key.hex()}"
        )
        name = address_text(wide)
        table = Table()
        for column in ("holder", "shares", "indices"):
            table.add_column(column)
        for h in group.holders:
            table.add_row(name(h.address), str(h.count), f"{h.first}..{h.first + h.count - 1}")
        table_console(wide).print(table)
    if status.dkg is not None and status.dkg_phase:
        click.echo(f"key generation of epoch {status.dkg.epoch}: {status.dkg_phase} window")


@beacon.command()
@node_option
@json_option
@wide_option
def groups(node: str, as_json: bool, wide: bool) -> None:
    """Every group key the chain has had (save with --json to verify rounds against it later)."""
    with chain_client(node) as client:
        answer = client.query(chain_beacon.GROUPS)
    if as_json:
        echo_json(to_json(answer))
        return
    table = Table()
    for column in ("epoch", "active from", "threshold", "dealers", "public key"):
        table.add_column(column)
    for g in answer.groups:
        key = g.public_key.hex()
        table.add_row(
            str(g.epoch), str(g.active_from), str(g.threshold), str(len(g.dealers)), key if wide else short(key)
        )
    table_console(wide).print(table)


@beacon.command()
@node_option
@json_option
def penalties(node: str, as_json: bool) -> None:
    """Faults recorded against accounts (bad dealings, forged partials, missing reveals...)."""
    with chain_client(node) as client:
        answer = client.query(chain_beacon.PENALTIES)
    if as_json:
        echo_json(to_json(answer))
        return
    if not answer.penalties:
        click.echo("no penalties recorded")
    for p in answer.penalties:
        click.echo(f"cycle {p.cycle}: {encode_address(p.address)}: {p.reason}")


def _read_groups(path: Path) -> tuple[Group, ...]:
    try:
        return from_json(Groups, json.loads(path.read_text())).groups
    except (OSError, ValueError) as e:
        fail(f"cannot read the groups in {path}: {e}")


@beacon.command()
@click.argument("round_number", metavar="ROUND", type=click.IntRange(min=1))
@click.option(
    "--group-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Group keys from `racenet beacon groups --json` (default: ask the node).",
)
@node_option
@json_option
def verify(round_number: int, group_file: Path | None, node: str, as_json: bool) -> None:
    """Check a past round offline: its signature under its group's public key, its output, its chaining."""
    with chain_client(node) as client:
        record = client.query(chain_beacon.ROUND, str(round_number))
        if record is None:
            fail(f"round {round_number} is not recorded (yet)")
        before = client.query(chain_beacon.ROUND, str(round_number - 1)) if round_number > 1 else None
        known = _read_groups(group_file) if group_file else client.query(chain_beacon.GROUPS).groups
    problems = verify_chain([r for r in (before, record) if r is not None], known)
    if as_json:
        echo_json({"round": round_number, "valid": not problems, "problems": problems})
    elif not problems:
        click.echo(f"round {round_number}: OK (group {record.epoch}, output {record.output.hex()})")
    if problems:
        if not as_json:
            click.echo("\n".join(problems), err=True)
        raise SystemExit(1)
