"""An on-disk keyring: one passphrase-encrypted JSON file per named key in `<home>/keyring/`.

The 32-byte ed25519 seed is sealed with XChaCha20-Poly1305 under a key stretched from the
passphrase by Argon2id (memory-hard, so guessing passphrases from a stolen file is slow). The
KDF cost and salt are recorded in each file, so the default cost can rise without breaking old
files. Name, address and public key are kept in clear so `list` and `show` need no passphrase;
name and address are bound to the ciphertext as associated data, so they cannot be swapped.
The backup phrase is the BIP-39 encoding of the seed itself (no BIP-32 derivation).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.utils
from mnemonic import Mnemonic
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
)
from nacl.exceptions import CryptoError
from nacl.pwhash import argon2id

from racenet.crypto.address import encode_address
from racenet.crypto.keys import PrivateKey, PublicKey

FILE_VERSION = 1
KDF_NAME = "argon2id"
CIPHER_NAME = "xchacha20poly1305-ietf"
MNEMONIC_WORDS = 24  # 256 bits of seed + 8 checksum bits
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MNEMONIC = Mnemonic("english")


class KeyringError(Exception):
    """An expected keyring failure, with a message fit to show the user."""


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost: `opslimit` passes over `memlimit` bytes of memory."""

    opslimit: int
    memlimit: int


# libsodium's MODERATE: 256 MiB, about 0.4 s per derivation on a 2-core machine.
DEFAULT_KDF = KdfParams(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)


@dataclass(frozen=True)
class KeyInfo:
    """The public facts about a stored key: its name, bech32 address and public key."""

    name: str
    address: str
    public_key: PublicKey

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready view (`name`, `address`, `pubkey` as hex) for files and `--json` output."""
        return {"name": self.name, "address": self.address, "pubkey": self.public_key.raw.hex()}


class Keyring:
    """The keys stored in one directory; every operation reads or writes the files directly."""

    def __init__(self, path: Path, kdf: KdfParams = DEFAULT_KDF) -> None:
        self.path = Path(path)
        self.kdf = kdf

    def add(self, name: str, passphrase: str) -> tuple[KeyInfo, str]:
        """Create a new random key; returns its info and the 24-word backup phrase to write down."""
        key = PrivateKey.generate()
        return self._store(name, key, passphrase), str(_MNEMONIC.to_mnemonic(key.seed))

    def import_mnemonic(self, name: str, words: str, passphrase: str) -> KeyInfo:
        """Store the key whose backup phrase is `words` (as printed by `add` or `export`)."""
        return self._store(name, PrivateKey(seed_from_mnemonic(words)), passphrase)

    def list(self) -> list[KeyInfo]:
        """Every stored key, sorted by name; no passphrase needed."""
        if not self.path.is_dir():
            return []
        files = sorted(p for p in self.path.iterdir() if p.suffix == ".json")
        return [_parse_info(_read_record(p), p.stem) for p in files]

    def show(self, name: str) -> KeyInfo:
        """The public info of one key; no passphrase needed."""
        return _parse_info(_read_record(self._existing_file(name)), name)

    def load(self, name: str, passphrase: str) -> PrivateKey:
        """Decrypt a stored key; a wrong passphrase is a KeyringError, not a wrong key."""
        record = _read_record(self._existing_file(name))
        info = _parse_info(record, name)
        key = PrivateKey(_open_seed(record, info, passphrase))
        if key.public_key != info.public_key:
            raise KeyringError(f"key file for {name!r} is corrupted: seed does not match public key")
        return key

    def export_mnemonic(self, name: str, passphrase: str) -> str:
        """The 24-word backup phrase of a stored key (needs its passphrase)."""
        return str(_MNEMONIC.to_mnemonic(self.load(name, passphrase).seed))

    def delete(self, name: str) -> None:
        """Remove a key file for good; only its backup phrase can bring the key back."""
        self._existing_file(name).unlink()
        _fsync_dir(self.path)

    def _file(self, name: str) -> Path:
        """The file holding key `name`, after checking the name is allowed."""
        if not NAME_PATTERN.fullmatch(name):
            raise KeyringError(f"invalid key name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-'")
        return self.path / f"{name}.json"

    def _existing_file(self, name: str) -> Path:
        """The file of an existing key, or a KeyringError naming the missing key."""
        path = self._file(name)
        if not path.is_file():
            raise KeyringError(f"no key named {name!r} in {self.path}")
        return path

    def _store(self, name: str, key: PrivateKey, passphrase: str) -> KeyInfo:
        """Encrypt and write a key under a new name (checked before the costly KDF runs)."""
        path = self._file(name)
        if path.exists():
            raise KeyringError(f"a key named {name!r} already exists in {self.path}")
        info = KeyInfo(name, encode_address(key.public_key.address), key.public_key)
        sealed = _seal(key.seed, info, passphrase, self.kdf)
        record = {"version": FILE_VERSION, **info.to_dict(), **sealed}
        _ensure_private_dir(self.path)
        _write_atomic(path, json.dumps(record, indent=2, sort_keys=True).encode())
        return info


def seed_from_mnemonic(words: str) -> bytes:
    """The 32-byte seed encoded by a 24-word BIP-39 phrase; KeyringError says what is wrong."""
    normalized = words.lower().split()
    if len(normalized) != MNEMONIC_WORDS:
        raise KeyringError(f"invalid mnemonic: expected {MNEMONIC_WORDS} words, got {len(normalized)}")
    unknown = [w for w in normalized if w not in _MNEMONIC.wordlist]
    if unknown:
        raise KeyringError(f"invalid mnemonic: unknown word {unknown[0]!r}")
    try:
        return bytes(_MNEMONIC.to_entropy(normalized))
    except ValueError as e:
        raise KeyringError("invalid mnemonic: checksum does not match (a word is wrong or misplaced)") from e


def _seal(seed: bytes, info: KeyInfo, passphrase: str, kdf: KdfParams) -> dict[str, Any]:
    """The `kdf` and `cipher` sections of a key file: the seed encrypted under the passphrase."""
    salt = nacl.utils.random(argon2id.SALTBYTES)
    nonce = nacl.utils.random(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    key = _derive_key(passphrase, salt, kdf)
    ciphertext = crypto_aead_xchacha20poly1305_ietf_encrypt(seed, _associated_data(info), nonce, key)
    return {
        "kdf": {"name": KDF_NAME, "opslimit": kdf.opslimit, "memlimit": kdf.memlimit, "salt": salt.hex()},
        "cipher": {"name": CIPHER_NAME, "nonce": nonce.hex(), "ciphertext": ciphertext.hex()},
    }


def _open_seed(record: dict[str, Any], info: KeyInfo, passphrase: str) -> bytes:
    """Decrypt the seed of a parsed key file; KeyringError on a wrong passphrase or bad file."""
    try:
        kdf_section, cipher_section = record["kdf"], record["cipher"]
        formats = (record["version"], kdf_section["name"], cipher_section["name"])
        if formats != (FILE_VERSION, KDF_NAME, CIPHER_NAME):
            raise KeyringError(f"key file for {info.name!r} has an unsupported format {formats}")
        kdf = KdfParams(int(kdf_section["opslimit"]), int(kdf_section["memlimit"]))
        salt = bytes.fromhex(kdf_section["salt"])
        nonce = bytes.fromhex(cipher_section["nonce"])
        ciphertext = bytes.fromhex(cipher_section["ciphertext"])
    except (KeyError, TypeError, ValueError) as e:
        raise KeyringError(f"key file for {info.name!r} is corrupted: {e}") from e
    key = _derive_key(passphrase, salt, kdf)
    try:
        return bytes(crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, _associated_data(info), nonce, key))
    except CryptoError as e:
        raise KeyringError(f"wrong passphrase for key {info.name!r} (or its file was altered)") from e


def _derive_key(passphrase: str, salt: bytes, kdf: KdfParams) -> bytes:
    """Stretch a passphrase into a cipher key (NFKC first, so any keyboard types the same bytes)."""
    password = unicodedata.normalize("NFKC", passphrase).encode("utf-8")
    try:
        key = argon2id.kdf(
            crypto_aead_xchacha20poly1305_ietf_KEYBYTES, password, salt, opslimit=kdf.opslimit, memlimit=kdf.memlimit
        )
    except (CryptoError, ValueError, TypeError) as e:
        raise KeyringError(f"cannot derive the key with the recorded KDF parameters: {e}") from e
    return bytes(key)


def _associated_data(info: KeyInfo) -> bytes:
    """Bind the ciphertext to its key name and address (NUL cannot occur in either)."""
    return f"racenet-keyring-v{FILE_VERSION}\0{info.name}\0{info.address}".encode()


def _read_record(path: Path) -> dict[str, Any]:
    """The JSON object in a key file."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise KeyringError(f"cannot read key file {path}: {e}") from e
    if not isinstance(record, dict):
        raise KeyringError(f"key file {path} is corrupted: not a JSON object")
    return record


def _parse_info(record: dict[str, Any], name: str) -> KeyInfo:
    """The public part of key file `name`, checking it is consistent with itself and its name."""
    try:
        public_key = PublicKey(bytes.fromhex(record["pubkey"]))
        info = KeyInfo(record["name"], record["address"], public_key)
    except (KeyError, TypeError, ValueError) as e:
        raise KeyringError(f"key file for {name!r} is corrupted: {e}") from e
    if info.name != name:
        raise KeyringError(f"key file for {name!r} is corrupted: it holds key {info.name!r}")
    if info.address != encode_address(public_key.address):
        raise KeyringError(f"key file for {name!r} is corrupted: address does not match public key")
    return info


def _ensure_private_dir(path: Path) -> None:
    """Create the keyring directory if needed and make it owner-only (0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a 0600 file so that a crash leaves either the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
