"""`racenet beacon show | groups | verify | penalties` against a node of a four-validator beacon chain, and
offline verification of rounds (`racenet.chain.modules.beacon.verify`) catching every kind of tampering."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from racenet.chain.jsonform import from_json
from racenet.chain.modules.beacon import Group, Round
from racenet.chain.modules.beacon.types import Groups
from racenet.chain.modules.beacon.verify import verify_chain, verify_round
from racenet.cli.main import cli
from racenet.node.embedded import EmbeddedNode
from racenet.node.rpc_server import serve_rpc
from tests.chain import beacon_validators
from tests.test_beacon import genesis
from tests.test_crash import free_port


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, EmbeddedNode]]:
    """The RPC URL of an embedded node of the four-validator beacon chain, 20 blocks in."""
    home = tmp_path_factory.mktemp("beacon-node")
    (home / "config").mkdir()
    g = genesis()
    g.save(home / "config" / "genesis.json")
    embedded = EmbeddedNode(home, validators=beacon_validators(g))
    for _ in range(20):
        embedded.produce_block()
    port = free_port()
    server = serve_rpc(embedded, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}", embedded
    finally:
        server.shutdown()
        embedded.close()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def rounds_and_groups(embedded: EmbeddedNode) -> tuple[list[Round], list[Group]]:
    ctx = embedded.app.read_context()
    keeper = embedded.app.beacon.keeper
    return [r for _, r in keeper.rounds.items(ctx)], [g for _, g in keeper.groups.items(ctx)]


def test_show_prints_the_status_and_rounds(node: tuple[str, EmbeddedNode]) -> None:
    url, embedded = node
    status = json.loads(run("beacon", "show", "--node", url, "--json").stdout)
    latest = status["latest"]["round"]
    assert latest >= 10 and status["pending_round"] == latest + 1 and status["group"]["threshold"] == 7
    text = run("beacon", "show", "--node", url).stdout
    assert f"pending round {latest + 1}" in text and "threshold 7 of 12 shares, 4 dealers" in text
    one = json.loads(run("beacon", "show", "3", "--node", url, "--json").stdout)
    record = embedded.app.beacon.keeper.rounds.get(embedded.app.read_context(), 3)
    assert record is not None and one["output"] == record.output.hex()
    missing = run("beacon", "show", "999", "--node", url)
    assert (
        missing.exit_code == 1 and "round 999 is not recorded" in missing.stderr and "Traceback" not in missing.output
    )


def test_verify_checks_a_round_against_the_node_or_a_saved_group_file(
    node: tuple[str, EmbeddedNode], tmp_path: Path
) -> None:
    url, _ = node
    ok = run("beacon", "verify", "5", "--node", url)
    assert ok.exit_code == 0 and "round 5: OK (group 0" in ok.stdout
    saved = tmp_path / "groups.json"
    saved.write_text(run("beacon", "groups", "--node", url, "--json").stdout)
    assert run("beacon", "verify", "6", "--node", url, "--group-file", str(saved)).exit_code == 0
    doc = json.loads(saved.read_text())
    other = from_json(Groups, doc).groups[0]
    forged_key = dataclasses.replace(other, commitments=(other.commitments[1], *other.commitments[1:]))
    doc["groups"][0]["commitments"][0] = forged_key.commitments[0].hex()
    saved.write_text(json.dumps(doc))
    bad = run("beacon", "verify", "6", "--node", url, "--group-file", str(saved), "--json")
    assert bad.exit_code == 1 and json.loads(bad.stdout)["valid"] is False
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{")
    unreadable = run("beacon", "verify", "6", "--node", url, "--group-file", str(garbage))
    assert unreadable.exit_code == 1 and "cannot read the groups" in unreadable.stderr


def test_groups_and_penalties_list_what_the_chain_holds(node: tuple[str, EmbeddedNode]) -> None:
    url, _ = node
    groups = json.loads(run("beacon", "groups", "--node", url, "--json").stdout)["groups"]
    assert [g["epoch"] for g in groups] == [0] and len(groups[0]["dealers"]) == 4
    assert run("beacon", "penalties", "--node", url).stdout.strip() == "no penalties recorded"


def test_offline_verification_reports_every_tampering(node: tuple[str, EmbeddedNode]) -> None:
    _, embedded = node
    rounds, groups = rounds_and_groups(embedded)
    assert verify_chain(rounds, groups) == [] and len(rounds) >= 10
    r, group = rounds[4], groups[0]
    assert verify_round(r, group) == ""
    other_signature = dataclasses.replace(r, signature=rounds[5].signature, output=rounds[5].output)
    assert "does not verify" in verify_round(other_signature, group)
    assert "not the hash" in verify_round(dataclasses.replace(r, output=bytes(32)), group)
    assert "signed by group" in verify_round(dataclasses.replace(r, epoch=1), group)
    assert "does not verify" in verify_round(dataclasses.replace(r, mix=bytes(32)), group)
    broken = [*rounds[:4], dataclasses.replace(r, previous=bytes(32)), *rounds[5:]]
    assert any("does not chain" in p for p in verify_chain(broken, groups))
    assert verify_chain(rounds, []) != []
