"""A validator's consensus key as CometBFT stores it (`config/priv_validator_key.json` in its home).

The public half is what a devnet's genesis lists; `racenet node register` also reads the private half,
once, to sign the proof that the account registering the key holds it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from racenet.crypto.keys import PrivateKey

ED25519_TYPE = "tendermint/PubKeyEd25519"
ED25519_PRIVATE_TYPE = "tendermint/PrivKeyEd25519"


class ConsensusKeyError(ValueError):
    """The key file is missing, unreadable or does not hold an ed25519 key; the message says which."""


def validator_pubkey(home: Path) -> bytes:
    """The raw ed25519 consensus public key from a CometBFT home's `priv_validator_key.json`."""
    path = home / "config" / "priv_validator_key.json"
    try:
        doc = json.loads(path.read_text())
        key_type, value = doc["pub_key"]["type"], doc["pub_key"]["value"]
        raw = base64.b64decode(value, validate=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConsensusKeyError(f"cannot read the validator key in {path}: {e}") from e
    if key_type != ED25519_TYPE or len(raw) != 32:
        raise ConsensusKeyError(f"{path} does not hold an ed25519 validator key")
    return raw


def validator_private_key(home: Path) -> PrivateKey:
    """The ed25519 consensus key itself from a CometBFT home's `priv_validator_key.json` (seed, then public key)."""
    path = home / "config" / "priv_validator_key.json"
    try:
        doc = json.loads(path.read_text())
        key_type, raw = doc["priv_key"]["type"], base64.b64decode(doc["priv_key"]["value"], validate=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConsensusKeyError(f"cannot read the validator key in {path}: {e}") from e
    if key_type != ED25519_PRIVATE_TYPE or len(raw) != 64:
        raise ConsensusKeyError(f"{path} does not hold an ed25519 validator key")
    key = PrivateKey(raw[:32])
    if key.public_key.raw != raw[32:]:
        raise ConsensusKeyError(f"{path}: the private key does not match its public key")
    return key
