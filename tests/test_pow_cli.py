"""`racenet race mine` and `racenet race calibrate`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from racenet.cli.race import race
from racenet.crypto.keys import PrivateKey
from racenet.pow.race import build_race
from racenet.pow.verifier import verify_nonces

SEED_HEX = bytes(range(32)).hex()
PUBKEY = PrivateKey(b"\x31" * 32).public_key.raw


def test_mine_appends_found_nonces_to_the_file_and_prints_json(tmp_path: Path) -> None:
    out = tmp_path / "nonces.txt"
    args = ["mine", "--seed", SEED_HEX, "--pubkey", PUBKEY.hex(), "--seconds", "1", "--out", str(out), "--json"]
    result = CliRunner().invoke(race, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["tried"] > 0 and summary["next_nonce"] == summary["tried"]
    assert [int(line) for line in out.read_text().split()] == summary["nonces"]
    assert all(verify_nonces(build_race("tiny", bytes(range(32))), PUBKEY, summary["nonces"]))


def test_mine_rejects_a_bad_seed_and_a_missing_key() -> None:
    bad_seed = CliRunner().invoke(race, ["mine", "--seed", "abcd", "--pubkey", PUBKEY.hex()])
    assert bad_seed.exit_code == 1 and "32 bytes" in bad_seed.output
    no_key = CliRunner().invoke(race, ["mine", "--seed", SEED_HEX])
    assert no_key.exit_code == 1 and "--pubkey" in no_key.output


def test_calibrate_prints_threshold_and_spread() -> None:
    result = CliRunner().invoke(race, ["calibrate", "--seeds", "2", "--nonces", "512", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["difficulty"] == 900 and len(report["per_seed"]) == 2 and 1.0 < report["threshold"] < 1.2
