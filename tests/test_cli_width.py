"""Every table of the CLI fits an 80-column terminal: short addresses by default, whole ones with `--wide`,
and no row cut so short that its key field is lost (issue 15, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from racenet.chain.modules.race import ClaimInfo, VoteInfo
from racenet.chain.modules.training import (
    MemberStatus,
    Participant,
    Participants,
    Segment,
    SegmentInfo,
    Segments,
    SegmentStatus,
)
from racenet.chain.scalars import Amount
from racenet.cli.common import TABLE_WIDTH, short, short_address
from racenet.cli.main import cli
from racenet.cli.race import _claims_table
from racenet.cli.train import audits_table, participants_table
from racenet.crypto.address import encode_address
from racenet.pow import calibrate
from tests.test_gov import N3, N4, NODES, run
from tests.test_gov import node as gov_node  # noqa: F401  (the fixture: an embedded node making blocks)

BOX = "┃│┏┗┡└━─"


def table_lines(text: str) -> list[str]:
    """The lines of the tables in a command's output (those with box-drawing characters)."""
    return [line for line in text.splitlines() if any(c in line for c in BOX)]


def assert_fits(text: str, *keys: str) -> None:
    """Tables in `text` are at most 80 columns wide and each key appears whole in some table line."""
    lines = table_lines(text)
    assert lines, text
    assert max(len(line) for line in lines) <= TABLE_WIDTH, text
    for k in keys:
        assert any(k in line for line in lines), f"{k} missing from\n{text}"


def assert_wide(text: str) -> None:
    """With --wide, the voters' addresses appear whole."""
    assert all(encode_address(k.public_key.address) in text for k in (N3, N4)), text


def test_every_table_fits_80_columns_with_short_addresses(gov_node: tuple[Path, str]) -> None:  # noqa: F811
    home, url = gov_node
    args = ["--home", str(home), "--node", url]
    changes = home / "changes.json"
    changes.write_text('{"min_fee": 2000}')
    title = "Raise the minimum fee so spam costs more than it earns, for every sender alike"
    assert run("gov", "submit", "params", "bank", str(changes), "--from", "n3", "--title", title, *args).exit_code == 0
    for voter in ("n3", "n4"):
        assert run("gov", "vote", "1", "yes", "--from", voter, *args).exit_code == 0
    voters = [short_address(k.public_key.address) for k in (N3, N4)]
    assert_fits(run("gov", "show", "1", "--node", url).stdout, *voters)  # while voting (a decided one drops its votes)
    assert_wide(run("gov", "show", "1", "--wide", "--node", url).stdout)
    for voter in ("n3", "n4"):
        assert run("price", "vote", "2uicon", "--from", voter, *args).exit_code == 0
    corpus = home / "corpus.txt"
    corpus.write_text("In the beginning was the word, and the word was short enough to fit.\n" * 50)
    assert run("train", "submit", "--data", str(corpus), "--from", "n3", *args, "1icon").exit_code == 0
    nodes = [short_address(k.public_key.address) for k in NODES]
    group = json.loads(run("beacon", "groups", "--node", url, "--json").stdout)["groups"][0]
    holders = [short(h["address"]) for h in group["holders"]]
    assert all(h.startswith("race1") and "…" in h for h in holders)
    commands: list[tuple[list[str], list[str]]] = [
        (["gov", "show"], ["bank/UpdateParams", "0.000001 icon", "Raise"]),
        (["price", "show"], voters),
        (["race", "status"], [*nodes, "absent"]),
        (["beacon", "show"], holders),
        (["beacon", "groups"], [str(group["epoch"]), short(group["commitments"][0])]),
        (["pool", "show"], ["12000000 icon", "2.56 usdt"]),
        (["train", "status"], ["gpt-tiny", "0/4"]),
    ]
    for command, keys in commands:
        result = run(*command, "--node", url)
        assert result.exit_code == 0, result.output
        assert_fits(result.stdout, *keys)
    for command in (["price", "show"], ["race", "status"]):
        assert_wide(run(*command, "--wide", "--node", url).stdout)
    as_json = json.loads(run("price", "show", "--json", "--node", url).stdout)
    assert {v["address"] for v in as_json["votes"]["votes"]} == {encode_address(k.public_key.address) for k in (N3, N4)}


def test_the_claims_table_fits_80_columns() -> None:
    committee = tuple(k.public_key.address for k in NODES)
    votes = tuple(VoteInfo(voter=v, weight=10 * (i + 1), failed=0, accept=i != 1) for i, v in enumerate(committee))
    claims = tuple(
        ClaimInfo(
            participant=k.public_key.address,
            count=28,
            revealed=True,
            committee=committee,
            votes=votes,
            escalated=True,
            standing="rejected",
        )
        for k in NODES
    )
    console = Console(width=TABLE_WIDTH, record=True)
    console.print(_claims_table(claims, short_address))
    assert_fits(
        console.export_text(), *(short_address(k.public_key.address) for k in NODES), "80 / 20", "committee", "rejected"
    )


def test_the_training_participants_and_audits_tables_fit_80_columns() -> None:
    addresses = [k.public_key.address for k in NODES]
    held = Amount(123_456_789_012)
    participants = Participants(
        job_id=1,
        round=3,
        participants=tuple(
            Participant(
                address=a,
                endpoint="203.0.113.7:29500",
                status=MemberStatus.ACTIVE,
                from_round=1,
                joined_height=40,
                reported_through=2,
                in_round=True,
                rank=i,
                reported=True,
                held=held,
            )
            for i, a in enumerate(addresses)
        ),
    )
    segment = Segment(
        step=12,
        status=SegmentStatus.DISPUTED,
        deadline=90,
        seed=bytes(32),
        trace=bytes(32),
        validators=tuple(addresses),
    )
    segments = Segments(1, tuple(SegmentInfo(2, a, segment) for a in addresses))
    console = Console(width=TABLE_WIDTH, record=True)
    console.print(participants_table(participants, short_address))
    console.print(audits_table(segments, short_address))
    assert_fits(console.export_text(), *(short_address(a) for a in addresses), "active", "disputed", "123.456789012")


def test_the_calibration_columns_fit_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """`race calibrate --noise` lines up one line per setting; the longest setting name still fits."""
    settings = ["fp32 batch 64", "fp32 batch 1", "fp32 1 thread", "fp32 small-matrix kernel", "bf16"]
    noise = [calibrate.Mismatch(f"{name} -> fp32", 2_048, 1_234, 3.1e-3) for name in settings]
    noise.append(calibrate.Mismatch("fp32 -> bf16", 2_048, 17, 2.5e-2))
    result = calibrate.Calibration("tiny", 900, 0.1234567, [0.1234, 0.1235], [1.0, 0.98], 8_192)

    monkeypatch.setattr(calibrate, "calibrate", lambda *args, **kwargs: result)
    monkeypatch.setattr(calibrate, "measure_noise", lambda *args, **kwargs: noise)
    shown = CliRunner().invoke(cli, ["race", "calibrate", "--noise"])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH, shown.stdout
    for m in noise:
        assert any(m.setting in line and f"{m.failed}/{m.appropriate}" in line for line in lines), shown.stdout
