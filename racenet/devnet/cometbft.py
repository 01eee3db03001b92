"""The pinned CometBFT binary: finding it, creating node homes and writing their config.toml.

The devnet drives CometBFT only through its own commands (`init`, `show-node-id`, `start`)
and files (`priv_validator_key.json`, `config.toml`), so nothing here depends on Go code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import racenet
from racenet.crypto import consensus_key
from racenet.devnet.errors import DevnetError

SUPPORTED_SERIES = "0.38."
ENV_BINARY = "RACENET_COMETBFT"
COMMAND_TIMEOUT_S = 30.0
INSTALL_HINT = "run `make install` (it installs the pinned CometBFT into .bin/) or set $RACENET_COMETBFT"
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")

TomlValue = str | bool | int
Settings = dict[tuple[str, str], TomlValue]
"""config.toml edits: (section, key) → value; section "" is the top level."""


def repo_binary() -> Path:
    """Where `make install` puts CometBFT: `.bin/cometbft` at the repository root."""
    return Path(racenet.__file__).resolve().parent.parent / ".bin" / "cometbft"


def find_cometbft() -> Path:
    """The CometBFT binary: $RACENET_COMETBFT, else the repository's .bin/, else PATH."""
    override = os.environ.get(ENV_BINARY)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DevnetError(f"${ENV_BINARY} points to {path}, which is not an executable file; {INSTALL_HINT}")
        return path
    local = repo_binary()
    if local.is_file() and os.access(local, os.X_OK):
        return local
    on_path = shutil.which("cometbft")
    if on_path:
        return Path(on_path)
    raise DevnetError(f"CometBFT not found (looked at ${ENV_BINARY}, {local} and PATH); {INSTALL_HINT}")


def run_cometbft(binary: Path, *args: str) -> str:
    """Run one short CometBFT command and return its stdout; DevnetError if it fails."""
    try:
        done = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DevnetError(f"`cometbft {' '.join(args)}` failed: {e}") from e
    if done.returncode != 0:
        raise DevnetError(f"`cometbft {' '.join(args)}` exited with {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


def check_version(binary: Path) -> str:
    """The binary's version; DevnetError unless it is the ABCI 2.0 series racenet speaks (v0.38)."""
    version = run_cometbft(binary, "version")
    if not version.startswith(SUPPORTED_SERIES):
        raise DevnetError(f"{binary} is CometBFT {version}, racenet needs v{SUPPORTED_SERIES}x; {INSTALL_HINT}")
    return version


def init_home(binary: Path, home: Path) -> None:
    """Create a node home: config.toml, node key and validator key (`cometbft init`)."""
    run_cometbft(binary, "init", "--home", str(home))


def node_id(binary: Path, home: Path) -> str:
    """The P2P node id of a home, as peers address it (`cometbft show-node-id`)."""
    value = run_cometbft(binary, "show-node-id", "--home", str(home)).splitlines()[-1].strip()
    if not re.fullmatch(r"[0-9a-f]{40}", value):
        raise DevnetError(f"`cometbft show-node-id` printed {value!r}, not a node id")
    return value


def validator_pubkey(home: Path) -> bytes:
    """The consensus key of a home (DevnetError if it cannot be read)."""
    try:
        return consensus_key.validator_pubkey(home)
    except consensus_key.ConsensusKeyError as e:
        raise DevnetError(str(e)) from e


def toml_value(value: TomlValue) -> str:
    """A TOML literal for a plain string, bool or int."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def apply_settings(text: str, settings: Settings) -> str:
    """Rewrite `key = …` lines of a CometBFT config.toml in place, keeping its comments.

    Every setting must match an existing line: CometBFT writes all keys, so a miss means
    the file format changed and silently appending would leave the old value in force.
    """
    section = ""
    done: set[tuple[str, str]] = set()
    lines: list[str] = []
    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            section = header.group(1).strip()
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else ""
        if (section, key) in settings:
            line = f"{key} = {toml_value(settings[(section, key)])}"
            done.add((section, key))
        lines.append(line)
    missing = [f"[{s}] {k}" if s else k for s, k in settings if (s, k) not in done]
    if missing:
        raise DevnetError(f"config.toml has no setting {', '.join(missing)}; is this CometBFT v0.38?")
    return "\n".join(lines) + "\n"


def configure(home: Path, settings: Settings) -> None:
    """Apply settings to a home's config.toml."""
    path = home / "config" / "config.toml"
    path.write_text(apply_settings(path.read_text(), settings))


def consensus_params_with_vote_extensions(home: Path) -> dict[str, Any]:
    """The consensus params `cometbft init` wrote into a home's genesis, with vote extensions enabled from
    height 1 (the random beacon's partial signatures and key generation travel in them)."""
    params: dict[str, Any] = json.loads((home / "config" / "genesis.json").read_text())["consensus_params"]
    params.setdefault("abci", {})["vote_extensions_enable_height"] = "1"
    return params
