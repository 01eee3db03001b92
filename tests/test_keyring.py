"""The on-disk keyring: encryption, backup phrases, errors, permissions, atomic writes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from mnemonic import Mnemonic
from nacl.pwhash import argon2id

from racenet.crypto.address import decode_address
from racenet.crypto.keyring import DEFAULT_KDF, KdfParams, Keyring, KeyringError
from racenet.crypto.keys import PrivateKey

FAST_KDF = KdfParams(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "keyring", kdf=FAST_KDF)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_kdf_is_memory_hard(tmp_path: Path) -> None:
    assert Keyring(tmp_path).kdf == DEFAULT_KDF
    assert DEFAULT_KDF.memlimit >= 256 * 1024 * 1024
    assert DEFAULT_KDF.opslimit >= 3


def test_add_list_show_load_round_trip(keyring: Keyring) -> None:
    info, words = keyring.add("alice", PASSPHRASE)
    assert info.name == "alice"
    assert info.address.startswith("race1")
    assert decode_address(info.address) == info.public_key.address
    assert len(words.split()) == 24
    assert keyring.show("alice") == info
    assert keyring.list() == [info]
    key = keyring.load("alice", PASSPHRASE)
    assert key.public_key == info.public_key
    assert Mnemonic("english").to_entropy(words) == key.seed


def test_list_is_sorted_and_empty_without_directory(keyring: Keyring) -> None:
    assert keyring.list() == []
    assert not keyring.path.exists()
    for name in ("carol", "alice", "bob"):
        keyring.add(name, PASSPHRASE)
    assert [info.name for info in keyring.list()] == ["alice", "bob", "carol"]


def test_key_file_holds_public_data_and_kdf_parameters_but_no_seed(keyring: Keyring) -> None:
    info, _ = keyring.add("alice", PASSPHRASE)
    seed = keyring.load("alice", PASSPHRASE).seed
    text = (keyring.path / "alice.json").read_text()
    record = json.loads(text)
    assert record["name"] == "alice"
    assert record["address"] == info.address
    assert record["pubkey"] == info.public_key.raw.hex()
    assert record["kdf"]["name"] == "argon2id"
    assert (record["kdf"]["opslimit"], record["kdf"]["memlimit"]) == (
        FAST_KDF.opslimit,
        FAST_KDF.memlimit,
    )
    assert len(bytes.fromhex(record["kdf"]["salt"])) == argon2id.SALTBYTES
    assert record["cipher"]["name"] == "xchacha20poly1305-ietf"
    assert seed.hex() not in text
    assert PASSPHRASE not in text


def test_recorded_kdf_parameters_are_used_for_loading(tmp_path: Path) -> None:
    Keyring(tmp_path, kdf=FAST_KDF).add("alice", PASSPHRASE)
    other = Keyring(tmp_path, kdf=KdfParams(FAST_KDF.opslimit + 1, FAST_KDF.memlimit * 2))
    assert other.load("alice", PASSPHRASE).public_key == other.show("alice").public_key


def test_wrong_passphrase(keyring: Keyring) -> None:
    keyring.add("alice", PASSPHRASE)
    with pytest.raises(KeyringError, match="wrong passphrase for key 'alice'"):
        keyring.load("alice", "not it")
    with pytest.raises(KeyringError, match="wrong passphrase"):
        keyring.export_mnemonic("alice", "")


def test_empty_passphrase_is_allowed(keyring: Keyring) -> None:
    info, _ = keyring.add("dev", "")
    assert keyring.load("dev", "").public_key == info.public_key
    with pytest.raises(KeyringError, match="wrong passphrase"):
        keyring.load("dev", " ")


def test_passphrase_is_unicode_normalized(keyring: Keyring) -> None:
    keyring.add("alice", "caf\u00e9")
    assert keyring.load("alice", "cafe\u0301").seed


def test_duplicate_name(keyring: Keyring) -> None:
    info, _ = keyring.add("alice", PASSPHRASE)
    with pytest.raises(KeyringError, match="'alice' already exists"):
        keyring.add("alice", PASSPHRASE)
    with pytest.raises(KeyringError, match="already exists"):
        keyring.import_mnemonic("alice", Mnemonic("english").to_mnemonic(bytes(32)), PASSPHRASE)
    assert keyring.show("alice") == info


def test_no_such_key(keyring: Keyring) -> None:
    for call in (
        lambda: keyring.show("bob"),
        lambda: keyring.load("bob", PASSPHRASE),
        lambda: keyring.export_mnemonic("bob", PASSPHRASE),
        lambda: keyring.delete("bob"),
    ):
        with pytest.raises(KeyringError, match="no key named 'bob'"):
            call()


def test_mnemonic_export_import_on_fresh_keyring(keyring: Keyring, tmp_path: Path) -> None:
    info, words = keyring.add("alice", PASSPHRASE)
    exported = keyring.export_mnemonic("alice", PASSPHRASE)
    assert exported == words
    fresh = Keyring(tmp_path / "other", kdf=FAST_KDF)
    restored = fresh.import_mnemonic("alice2", exported, "new passphrase")
    assert restored.address == info.address
    assert restored.public_key == info.public_key
    assert fresh.load("alice2", "new passphrase").seed == keyring.load("alice", PASSPHRASE).seed


def test_import_tolerates_case_and_whitespace(keyring: Keyring) -> None:
    key = PrivateKey.generate()
    words = Mnemonic("english").to_mnemonic(key.seed)
    messy = "\n  " + "   ".join(words.upper().split()) + "\n"
    assert keyring.import_mnemonic("alice", messy, PASSPHRASE).public_key == key.public_key


VALID_WORDS = Mnemonic("english").to_mnemonic(bytes(range(32))).split()


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        ([*VALID_WORDS[:-1], "zoo"], "checksum does not match"),
        (VALID_WORDS[1:] + VALID_WORDS[:1], "checksum does not match"),
        ([*VALID_WORDS[:-1], "notaword"], "unknown word 'notaword'"),
        (VALID_WORDS[:23], "expected 24 words, got 23"),
        (VALID_WORDS[:12], "expected 24 words, got 12"),
        ([], "expected 24 words, got 0"),
    ],
)
def test_invalid_mnemonic(keyring: Keyring, words: list[str], problem: str) -> None:
    assert VALID_WORDS[-1] != "zoo"
    with pytest.raises(KeyringError, match=f"invalid mnemonic: .*{problem}"):
        keyring.import_mnemonic("alice", " ".join(words), PASSPHRASE)
    assert keyring.list() == []


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "../evil", "a/b", "ключ", "x\0y", "semi;colon"])
def test_invalid_names(keyring: Keyring, name: str) -> None:
    with pytest.raises(KeyringError, match="invalid key name"):
        keyring.add(name, PASSPHRASE)
    with pytest.raises(KeyringError, match="invalid key name"):
        keyring.show(name)
    assert not keyring.path.exists() or list(keyring.path.iterdir()) == []


@pytest.mark.parametrize("name", ["a", "A-b_c.d", "x" * 64, "validator.0"])
def test_valid_names(keyring: Keyring, name: str) -> None:
    info, _ = keyring.add(name, PASSPHRASE)
    assert keyring.show(name) == info


def test_file_permissions(keyring: Keyring) -> None:
    keyring.add("alice", PASSPHRASE)
    assert _mode(keyring.path) == 0o700
    assert _mode(keyring.path / "alice.json") == 0o600


def test_existing_loose_directory_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "keyring"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    Keyring(path, kdf=FAST_KDF).add("alice", PASSPHRASE)
    assert _mode(path) == 0o700


def test_writes_leave_no_temporary_files(keyring: Keyring) -> None:
    keyring.add("alice", PASSPHRASE)
    keyring.add("bob", PASSPHRASE)
    assert sorted(p.name for p in keyring.path.iterdir()) == ["alice.json", "bob.json"]


def test_failed_write_leaves_no_key_file(keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("racenet.crypto.keyring.os.fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        keyring.add("alice", PASSPHRASE)
    assert list(keyring.path.iterdir()) == []


def test_delete(keyring: Keyring) -> None:
    keyring.add("alice", PASSPHRASE)
    keyring.add("bob", PASSPHRASE)
    keyring.delete("alice")
    assert [info.name for info in keyring.list()] == ["bob"]
    with pytest.raises(KeyringError, match="no key named 'alice'"):
        keyring.show("alice")


def test_swapped_key_files_are_detected(keyring: Keyring) -> None:
    keyring.add("alice", PASSPHRASE)
    keyring.add("bob", PASSPHRASE)
    (keyring.path / "bob.json").replace(keyring.path / "carol.json")
    with pytest.raises(KeyringError, match="corrupted: it holds key 'bob'"):
        keyring.show("carol")


def test_tampered_address_is_detected(keyring: Keyring) -> None:
    keyring.add("alice", PASSPHRASE)
    bob, _ = keyring.add("bob", PASSPHRASE)
    path = keyring.path / "alice.json"
    record = json.loads(path.read_text())
    record["address"] = bob.address
    path.write_text(json.dumps(record))
    with pytest.raises(KeyringError, match="address does not match public key"):
        keyring.show("alice")


def test_tampered_ciphertext_fails_like_wrong_passphrase(keyring: Keyring) -> None:
    keyring.add("alice", PASSPHRASE)
    path = keyring.path / "alice.json"
    record = json.loads(path.read_text())
    ciphertext = bytearray.fromhex(record["cipher"]["ciphertext"])
    ciphertext[0] ^= 1
    record["cipher"]["ciphertext"] = ciphertext.hex()
    path.write_text(json.dumps(record))
    with pytest.raises(KeyringError, match=r"wrong passphrase .*altered"):
        keyring.load("alice", PASSPHRASE)


@pytest.mark.parametrize("content", ["", "{", "[]", '{"name": "alice"}'])
def test_corrupted_file_is_a_keyring_error(keyring: Keyring, content: str) -> None:
    keyring.add("alice", PASSPHRASE)
    (keyring.path / "alice.json").write_text(content)
    with pytest.raises(KeyringError, match="alice"):
        keyring.show("alice")
    with pytest.raises(KeyringError, match="alice"):
        keyring.list()


def test_missing_cipher_section_is_a_keyring_error(keyring: Keyring) -> None:
    keyring.add("alice", PASSPHRASE)
    path = keyring.path / "alice.json"
    record = json.loads(path.read_text())
    del record["cipher"]
    path.write_text(json.dumps(record))
    with pytest.raises(KeyringError, match="corrupted"):
        keyring.load("alice", PASSPHRASE)


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [(None, "version", 2), ("kdf", "name", "scrypt"), ("cipher", "name", "aes-gcm")],
)
def test_unsupported_format_is_a_keyring_error(
    keyring: Keyring, section: str | None, field: str, value: object
) -> None:
    keyring.add("alice", PASSPHRASE)
    path = keyring.path / "alice.json"
    record = json.loads(path.read_text())
    (record if section is None else record[section])[field] = value
    path.write_text(json.dumps(record))
    with pytest.raises(KeyringError, match="unsupported format"):
        keyring.load("alice", PASSPHRASE)
