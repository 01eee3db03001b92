"""`racenet up`: a provider's three processes under one supervisor.

It starts the racenet App, then CometBFT once the App listens, and registers the node (race/RegisterNode and
beacon/RegisterKey, paid by the node's account) once CometBFT has caught up with the network; then it starts
the daemon that races, serves the API and checks answers. A process that exits is restarted after a pause
that doubles with each quick failure (1 s up to a minute). SIGTERM or Ctrl-C stops them in the order the devnet
uses: the daemon, CometBFT, then the App.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from racenet.crypto.address import encode_address
from racenet.crypto.consensus_key import ConsensusKeyError
from racenet.crypto.keys import PrivateKey
from racenet.devnet import cometbft, process
from racenet.devnet.commands import app_argv, daemon_argv
from racenet.devnet.errors import DevnetError
from racenet.devnet.network import STOP_ORDER, STOP_TIMEOUT_S, accepts_connections, tail_lines
from racenet.devnet.state import Kind, ProcessRecord
from racenet.node.beacon_agent import BeaconKeyError
from racenet.node.client import ChainClient, ClientError
from racenet.node.registration import is_registered, registration_msgs
from racenet.node.sender import TxSender
from racenet.provider.home import ProviderConfig, ProviderError, cometbft_home, log_path

POLL_S = 0.5
REGISTER_EVERY_S = 5.0
"""How often a node that has not registered yet looks at its sync status and tries again."""
RPC_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 60.0
HEALTHY_AFTER_S = 60.0
"""A process that ran this long before exiting is restarted after the shortest pause again."""

Echo = Callable[[str], None]


@dataclass
class Child:
    """One supervised process: how to start it and how it has fared."""

    kind: Kind
    argv: list[str]
    record: ProcessRecord | None = None
    started: float = 0.0
    failures: int = 0
    not_before: float = 0.0


@dataclass
class Supervisor:
    """Runs, restarts and stops one provider's App, CometBFT and daemon, and registers the node."""

    home: Path
    config: ProviderConfig
    key: PrivateKey
    passphrase: str
    echo: Echo
    registered: bool = False
    children: dict[Kind, Child] = field(default_factory=dict)
    next_registration: float = 0.0

    def __post_init__(self) -> None:
        ports, chome = self.config.ports, cometbft_home(self.home)
        options = ["--public-api", self.config.api_url, "--backend", self.config.backend, "--cometbft-home", str(chome)]
        if self.config.threads is not None:
            options += ["--threads", str(self.config.threads)]
        api = f"{self.config.host}:{ports.api}"
        state = self.home / "race"
        self.children = {
            "app": Child("app", app_argv(chome, ports.abci)),
            "cometbft": Child("cometbft", [str(cometbft.find_cometbft()), "start", "--home", str(chome)]),
            "node": Child(
                "node",
                daemon_argv(
                    self.home, self.config.key, self.config.rpc_url, state, self.config.compute_budget, api, options
                ),
            ),
        }

    def run(self, stop: threading.Event) -> None:
        """Supervise until `stop` is set, then stop every process."""
        self.echo(f"account {encode_address(self.key.public_key.address)}; logs in {self.home / 'logs'}")
        try:
            while not stop.is_set():
                self.tend()
                stop.wait(POLL_S)
        finally:
            self.stop_all()

    def tend(self) -> None:
        """One round: restart what exited, start what may start now, register once caught up."""
        now = time.monotonic()
        for child in self.children.values():
            self._notice_exit(child, now)
        self._maybe_start(self.children["app"], now)
        if accepts_connections(self.config.ports.abci):
            self._maybe_start(self.children["cometbft"], now)
        if not self.registered and now >= self.next_registration:
            self.next_registration = now + REGISTER_EVERY_S
            self.registered = self._register()
        if self.registered:
            self._maybe_start(self.children["node"], now)

    def _notice_exit(self, child: Child, now: float) -> None:
        """If a started process has exited, forget it and schedule its restart."""
        if child.record is None or process.is_running(child.record):
            return
        child.record = None
        path = log_path(self.home, child.kind)
        self._schedule_restart(child, now, f"exited (see {path}: {' | '.join(tail_lines(path, 2))})")

    def _schedule_restart(self, child: Child, now: float, why: str) -> None:
        """Restart after a pause that doubles with each failure of a process that did not run long."""
        child.failures = 1 if now - child.started >= HEALTHY_AFTER_S else child.failures + 1
        pause = min(MAX_BACKOFF_S, 2.0 ** (child.failures - 1))
        child.not_before = now + pause
        self.echo(f"{child.kind} {why}; restarting in {pause:.0f}s")

    def _maybe_start(self, child: Child, now: float) -> None:
        """Start a process that is not running once its pause is over."""
        if child.record is not None or now < child.not_before:
            return
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RACENET_PASSPHRASE": self.passphrase}
        child.started = now
        try:
            child.record = process.spawn(child.argv, log_path(self.home, child.kind), env)
        except DevnetError as e:
            self._schedule_restart(child, now, f"did not start: {e}")
            return
        self.echo(f"{child.kind} started (PID {child.record.pid})")

    def _register(self) -> bool:
        """Whether the node is registered, sending the registration once CometBFT has caught up."""
        if not accepts_connections(self.config.ports.rpc):
            return False
        address = self.key.public_key.address
        try:
            msgs = registration_msgs(cometbft_home(self.home), self.config.chain_id, address)
        except (ConsensusKeyError, BeaconKeyError, OSError) as e:
            raise ProviderError(f"cannot register: {e}") from e
        with ChainClient(self.config.rpc_url, timeout=RPC_TIMEOUT_S) as client:
            try:
                sync = client.status()["sync_info"]
                if sync["catching_up"]:
                    self.echo(f"block-syncing: height {sync['latest_block_height']}")
                    return False
                if is_registered(client, address):
                    return True
                outcome = TxSender(client, self.key).send(msgs)
            except (ClientError, KeyError, ValueError) as e:
                self.echo(f"not registered yet ({e}); the account pays a fee, so it must hold funds")
                return False
        self.echo(f"registered in block {outcome.height}; the node races from the next cycle")
        return True

    def stop_all(self) -> None:
        """Stop the daemon, CometBFT and the App, in that order."""
        for kind in STOP_ORDER:
            record = self.children[kind].record
            if record is not None:
                self.echo(f"{kind} (PID {record.pid}): {process.stop(record, STOP_TIMEOUT_S)}")
                self.children[kind].record = None
