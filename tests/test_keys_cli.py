"""`racenet keys`: commands, exit codes, JSON output and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mnemonic import Mnemonic
from nacl.pwhash import argon2id

from racenet.cli.keys import keys
from racenet.crypto.keyring import KdfParams, KeyInfo, Keyring
from racenet.crypto.keys import PrivateKey

PASSPHRASE = "cli passphrase"
# Keys created directly with a cheap KDF keep the suite fast; `add` and `import` through the
# CLI use the real default cost (the KDF parameters are read back from each file).
FAST_KDF = KdfParams(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)


def run(home: Path, *args: str, stdin: str | None = None, passphrase: str = PASSPHRASE) -> Result:
    runner = CliRunner(env={"RACENET_PASSPHRASE": passphrase, "RACENET_HOME": None})
    return runner.invoke(keys, [*args, "--home", str(home)], input=stdin)


def add_fast_key(home: Path, name: str) -> tuple[KeyInfo, str]:
    return Keyring(home / "keyring", kdf=FAST_KDF).add(name, PASSPHRASE)


def assert_user_error(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert f"Error: {message}" in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_add_prints_address_and_backup_phrase(tmp_path: Path) -> None:
    result = run(tmp_path, "add", "alice")
    assert result.exit_code == 0, result.output
    info = Keyring(tmp_path / "keyring").show("alice")
    assert f"address: {info.address}" in result.stdout
    assert "Write this backup phrase down" in result.stdout
    phrase = result.stdout.strip().splitlines()[-1]
    assert len(phrase.split()) == 24
    seed = bytes(Mnemonic("english").to_entropy(phrase))
    assert PrivateKey(seed).public_key == info.public_key


def test_add_json_then_import_from_stdin_restores_same_address(tmp_path: Path) -> None:
    added = run(tmp_path / "a", "add", "alice", "--json")
    assert added.exit_code == 0, added.output
    doc = json.loads(added.stdout)
    assert set(doc) == {"name", "address", "pubkey", "mnemonic"}
    assert doc["name"] == "alice"

    imported = run(tmp_path / "b", "import", "restored", "--json", stdin=doc["mnemonic"] + "\n")
    assert imported.exit_code == 0, imported.output
    restored = json.loads(imported.stdout)
    assert restored == {"name": "restored", "address": doc["address"], "pubkey": doc["pubkey"]}


def test_import_from_mnemonic_file(tmp_path: Path) -> None:
    info, words = add_fast_key(tmp_path / "a", "alice")
    phrase_file = tmp_path / "phrase.txt"
    phrase_file.write_text(words + "\n")
    result = run(tmp_path / "b", "import", "alice", "--mnemonic-file", str(phrase_file))
    assert result.exit_code == 0, result.output
    assert info.address in result.stdout
    assert Keyring(tmp_path / "b" / "keyring").show("alice").address == info.address


def test_list(tmp_path: Path) -> None:
    empty = run(tmp_path, "list", "--json")
    assert empty.exit_code == 0
    assert json.loads(empty.stdout) == []
    assert "No keys" in run(tmp_path, "list").stdout

    bob, _ = add_fast_key(tmp_path, "bob")
    alice, _ = add_fast_key(tmp_path, "alice")
    listed = run(tmp_path, "list", "--json")
    assert listed.exit_code == 0
    assert json.loads(listed.stdout) == [alice.to_dict(), bob.to_dict()]
    lines = run(tmp_path, "list").stdout.splitlines()
    assert lines == [f"alice\t{alice.address}", f"bob\t{bob.address}"]


def test_show(tmp_path: Path) -> None:
    info, _ = add_fast_key(tmp_path, "alice")
    as_json = run(tmp_path, "show", "alice", "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {
        "name": "alice",
        "address": info.address,
        "pubkey": info.public_key.raw.hex(),
    }
    text = run(tmp_path, "show", "alice")
    assert text.exit_code == 0
    assert info.address in text.stdout
    assert info.public_key.raw.hex() in text.stdout


def test_list_and_show_need_no_passphrase(tmp_path: Path) -> None:
    add_fast_key(tmp_path, "alice")
    runner = CliRunner(env={"RACENET_PASSPHRASE": None})
    for args in (["list"], ["show", "alice"]):
        result = runner.invoke(keys, [*args, "--home", str(tmp_path)], input="")
        assert result.exit_code == 0, result.output
        assert "passphrase" not in result.output.lower()


def test_export_prints_backup_phrase(tmp_path: Path) -> None:
    _, words = add_fast_key(tmp_path, "alice")
    result = run(tmp_path, "export", "alice")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == words


def test_export_with_wrong_passphrase(tmp_path: Path) -> None:
    add_fast_key(tmp_path, "alice")
    result = run(tmp_path, "export", "alice", passphrase="wrong")
    assert_user_error(result, "wrong passphrase for key 'alice'")
    assert result.stdout == ""


def test_add_duplicate_name(tmp_path: Path) -> None:
    add_fast_key(tmp_path, "alice")
    assert_user_error(run(tmp_path, "add", "alice"), "a key named 'alice' already exists")


@pytest.mark.parametrize(
    "args",
    [["show", "nobody"], ["export", "nobody"], ["delete", "nobody", "--yes"]],
)
def test_missing_key(tmp_path: Path, args: list[str]) -> None:
    assert_user_error(run(tmp_path, *args), "no key named 'nobody'")


@pytest.mark.parametrize("args", [["add", "bad name"], ["show", "a/b"], ["import", "x" * 65]])
def test_invalid_name(tmp_path: Path, args: list[str]) -> None:
    words = Mnemonic("english").to_mnemonic(bytes(32))
    assert_user_error(run(tmp_path, *args, stdin=words), "invalid key name")


def test_import_invalid_mnemonic(tmp_path: Path) -> None:
    words = Mnemonic("english").to_mnemonic(bytes(32)).split()
    swapped = " ".join(words[1:] + words[:1])
    assert_user_error(run(tmp_path, "import", "alice", stdin=swapped), "invalid mnemonic")
    assert_user_error(run(tmp_path, "import", "alice", stdin="not a phrase"), "invalid mnemonic")
    assert Keyring(tmp_path / "keyring").list() == []


def test_import_missing_mnemonic_file_is_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, "import", "alice", "--mnemonic-file", str(tmp_path / "missing.txt"))
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_delete_requires_confirmation(tmp_path: Path) -> None:
    add_fast_key(tmp_path, "alice")
    declined = run(tmp_path, "delete", "alice", stdin="n\n")
    assert declined.exit_code == 1
    assert "Delete key 'alice'" in declined.output
    assert Keyring(tmp_path / "keyring").show("alice").name == "alice"

    confirmed = run(tmp_path, "delete", "alice", stdin="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert Keyring(tmp_path / "keyring").list() == []


def test_delete_yes(tmp_path: Path) -> None:
    add_fast_key(tmp_path, "alice")
    bob, _ = add_fast_key(tmp_path, "bob")
    result = run(tmp_path, "delete", "alice", "--yes")
    assert result.exit_code == 0, result.output
    assert "Deleted key 'alice'" in result.stdout
    assert Keyring(tmp_path / "keyring").list() == [bob]


def test_corrupted_key_file_is_a_one_line_error(tmp_path: Path) -> None:
    add_fast_key(tmp_path, "alice")
    (tmp_path / "keyring" / "alice.json").write_text("{not json")
    assert_user_error(run(tmp_path, "list"), "cannot read key file")
