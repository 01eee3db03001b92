"""The command lines of a node's racenet processes, shared by the devnet and `racenet up`."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from racenet.devnet.errors import DevnetError
from racenet.devnet.state import HOST


def racenet_executable() -> Path:
    """The `racenet` console script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "racenet"
    if beside.is_file():
        return beside
    found = shutil.which("racenet")
    if found is None:
        raise DevnetError("the `racenet` command is not installed; run `make install`")
    return Path(found).absolute()


def app_argv(home: Path, abci_port: int) -> list[str]:
    """`racenet app` serving the state machine of a CometBFT home on a loopback ABCI port."""
    return [str(racenet_executable()), "app", "--home", str(home), "--abci", f"tcp://{HOST}:{abci_port}"]


def daemon_argv(
    home: Path, key: str, rpc_url: str, state: Path, compute_budget: float, api: str, options: Sequence[str] = ()
) -> list[str]:
    """`racenet node run` for one account: race, serve the API at `api` (host:port), check answers."""
    budget = ["--compute-budget", str(compute_budget)]
    place = ["--home", str(home), "--key", key, "--node", rpc_url, "--state", str(state), "--api", api]
    return [str(racenet_executable()), "node", "run", *place, *budget, *options]
