"""The genesis file, in CometBFT's JSON format so both engines read the same file.

`app_state` is the JSON form of an `AppState` (one typed genesis state per module);
validators are CometBFT's list of ed25519 keys and powers.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from racenet.chain.app_state import AppState
from racenet.chain.jsonform import from_json, to_json
from racenet.chain.types import InitChainRequest, ValidatorUpdate

PUBKEY_TYPE = "tendermint/PubKeyEd25519"


class GenesisFileError(ValueError):
    """The genesis file is missing, not JSON, or has a malformed field."""


@dataclass
class GenesisValidator:
    """A genesis validator: ed25519 public key, power and a display name."""

    pub_key: bytes
    power: int
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        """CometBFT's JSON form (address = first 20 bytes of SHA-256 of the key)."""
        return {
            "address": hashlib.sha256(self.pub_key).digest()[:20].hex().upper(),
            "pub_key": {"type": PUBKEY_TYPE, "value": base64.b64encode(self.pub_key).decode()},
            "power": str(self.power),
            "name": self.name,
        }


@dataclass
class Genesis:
    """A parsed genesis document."""

    chain_id: str
    genesis_time: int
    initial_height: int = 1
    validators: list[GenesisValidator] = field(default_factory=list)
    app_state: AppState = field(default_factory=AppState)
    consensus_params: dict[str, Any] | None = None

    def init_chain_request(self) -> InitChainRequest:
        """The InitChain call an engine makes for this genesis."""
        return InitChainRequest(
            chain_id=self.chain_id,
            time=self.genesis_time,
            initial_height=self.initial_height,
            app_state=json.dumps(to_json(self.app_state), sort_keys=True).encode(),
            validators=tuple(ValidatorUpdate(v.pub_key, v.power) for v in self.validators),
        )

    def to_json(self) -> dict[str, Any]:
        """The CometBFT-compatible JSON document."""
        doc: dict[str, Any] = {
            "genesis_time": format_time(self.genesis_time),
            "chain_id": self.chain_id,
            "initial_height": str(self.initial_height),
            "validators": [v.to_json() for v in self.validators],
            "app_hash": "",
            "app_state": to_json(self.app_state),
        }
        if self.consensus_params is not None:
            doc["consensus_params"] = self.consensus_params
        return doc

    def save(self, path: Path) -> None:
        """Write the file atomically."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)


def format_time(unix_seconds: int) -> str:
    """RFC 3339 UTC, as CometBFT writes times."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_seconds))


def parse_time(text: str) -> int:
    """Unix seconds from an RFC 3339 UTC time (fractional seconds are dropped)."""
    try:
        base = text.rstrip("Z").split(".")[0]
        return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    except ValueError as e:
        raise GenesisFileError(f"genesis_time {text!r} is not an RFC 3339 UTC time") from e


def _validator(doc: Any) -> GenesisValidator:
    try:
        if doc["pub_key"]["type"] != PUBKEY_TYPE:
            raise GenesisFileError(f"validator key type must be {PUBKEY_TYPE}")
        pub = base64.b64decode(doc["pub_key"]["value"], validate=True)
        power = int(doc["power"])
    except (KeyError, TypeError, ValueError) as e:
        raise GenesisFileError(f"malformed validator entry: {e}") from e
    if len(pub) != 32 or power < 0:
        raise GenesisFileError("validator needs a 32-byte ed25519 key and a non-negative power")
    return GenesisValidator(pub, power, str(doc.get("name", "")))


def parse_genesis(doc: Any) -> Genesis:
    """Validate a genesis JSON document; raise GenesisFileError naming the bad field."""
    if not isinstance(doc, dict):
        raise GenesisFileError("genesis must be a JSON object")
    chain_id = doc.get("chain_id")
    if not isinstance(chain_id, str) or not 0 < len(chain_id) <= 50:
        raise GenesisFileError("chain_id must be a string of 1 to 50 characters")
    raw_state = doc.get("app_state", {})
    if not isinstance(raw_state, dict):
        raise GenesisFileError("app_state must be a JSON object")
    try:
        app_state = from_json(AppState, raw_state)
    except ValueError as e:
        raise GenesisFileError(f"app_state.{e}") from e
    try:
        initial_height = int(doc.get("initial_height", 1))
    except (TypeError, ValueError) as e:
        raise GenesisFileError("initial_height must be an integer") from e
    return Genesis(
        chain_id=chain_id,
        genesis_time=parse_time(str(doc.get("genesis_time", ""))),
        initial_height=max(initial_height, 1),
        validators=[_validator(v) for v in doc.get("validators") or []],
        app_state=app_state,
        consensus_params=doc.get("consensus_params"),
    )


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis file."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise GenesisFileError(f"no genesis file at {path} (run `racenet init` first)") from e
    except ValueError as e:
        raise GenesisFileError(f"{path} is not valid JSON: {e}") from e
    return parse_genesis(doc)
