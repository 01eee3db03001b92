"""A validator's consensus key as CometBFT stores it (`config/priv_validator_key.json` in its home).

Only the public half is read: it is what `racenet node register` binds an account to, and what a
devnet's genesis lists.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

ED25519_TYPE = "tendermint/PubKeyEd25519"


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
