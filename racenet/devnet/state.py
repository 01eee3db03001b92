"""The devnet's record of itself, `<dir>/devnet.json`: nodes, ports and the processes it started.

The record is what `down` trusts: a process is stopped only if its recorded PID still runs
the recorded command line, so a recycled PID is never killed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from racenet.devnet.errors import DevnetError

STATE_FILE = "devnet.json"
STATE_VERSION = 2
HOST = "127.0.0.1"
PORTS_PER_NODE = 10
"""Node i uses base + 10·(i-1) + {0: P2P, 1: RPC, 2: ABCI, 3: API}."""

Kind = Literal["app", "cometbft", "node"]
KINDS: tuple[Kind, ...] = ("app", "cometbft", "node")


@dataclass(frozen=True)
class Ports:
    """A node's loopback ports."""

    p2p: int
    rpc: int
    abci: int
    api: int

    @classmethod
    def for_node(cls, base: int, index: int) -> Ports:
        """The ports of node `index` (1-based) in a devnet starting at `base`."""
        first = base + PORTS_PER_NODE * (index - 1)
        return cls(p2p=first, rpc=first + 1, abci=first + 2, api=first + 3)

    @property
    def training(self) -> int:
        """The training endpoint (rendezvous, traces, artifacts): the port after the API's."""
        return self.api + 1


@dataclass(frozen=True)
class ProcessRecord:
    """A started process: its PID and the exact command line it ran with (from /proc)."""

    pid: int
    cmdline: tuple[str, ...]


DEFAULT_BACKEND = "transformers"
"""What a node's daemon serves requests with unless the devnet was created with another (`--backend`)."""


@dataclass
class NodeRecord:
    """One validator: its home, identity, ports, Race account and (while running) its three processes."""

    index: int
    node_id: str
    pub_key: bytes
    ports: Ports
    account: str
    compute_budget: float = 1.0
    backend: str = DEFAULT_BACKEND
    """What its daemon serves requests with (`racenet node run --backend`)."""
    processes: dict[Kind, ProcessRecord] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The processes this node runs: no Race daemon when its compute budget is 0."""
        return KINDS if self.compute_budget > 0 else ("app", "cometbft")

    @property
    def name(self) -> str:
        """`node<index>`, also the home directory's name."""
        return f"node{self.index}"

    @property
    def rpc_url(self) -> str:
        """CometBFT RPC endpoint."""
        return f"http://{HOST}:{self.ports.rpc}"

    @property
    def training_endpoint(self) -> str:
        """The node daemon's training endpoint (`racenet train join --endpoint`)."""
        return f"{HOST}:{self.ports.training}"

    @property
    def api_url(self) -> str:
        """The node's OpenAI-compatible API (served by its daemon)."""
        return f"http://{HOST}:{self.ports.api}"

    @property
    def abci_address(self) -> str:
        """Where this node's App serves ABCI."""
        return f"tcp://{HOST}:{self.ports.abci}"

    @property
    def p2p_address(self) -> str:
        """CometBFT P2P listen address."""
        return f"tcp://{HOST}:{self.ports.p2p}"

    @property
    def peer_address(self) -> str:
        """`id@host:port`, as other nodes list it in persistent_peers."""
        return f"{self.node_id}@{HOST}:{self.ports.p2p}"


@dataclass
class DevnetState:
    """Everything `devnet.json` records about one devnet."""

    dir: Path
    chain_id: str
    block_time: str
    base_port: int
    faucet: str
    nodes: list[NodeRecord]
    dummy_tasks: bool = False
    """Whether the validators' daemons send dummy requests when traffic is low."""

    def home(self, node: NodeRecord) -> Path:
        """A node's home directory (CometBFT config and data, and the App's database)."""
        return self.dir / node.name

    def log_path(self, node: NodeRecord, kind: Kind) -> Path:
        """Where a node's app, cometbft or node (Race daemon) process writes stdout and stderr."""
        return self.home(node) / "logs" / f"{kind}.log"

    def node(self, index: int) -> NodeRecord:
        """Node `index` (1-based); DevnetError if there is none."""
        if not 1 <= index <= len(self.nodes):
            raise DevnetError(f"no node {index}: this devnet has nodes 1 to {len(self.nodes)}")
        return self.nodes[index - 1]

    def save(self) -> None:
        """Write devnet.json atomically."""
        path = self.dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, path)

    def to_json(self) -> dict[str, Any]:
        """The devnet.json document."""
        return {
            "version": STATE_VERSION,
            "chain_id": self.chain_id,
            "block_time": self.block_time,
            "base_port": self.base_port,
            "faucet": self.faucet,
            "nodes": [_node_json(n) for n in self.nodes],
            "dummy_tasks": self.dummy_tasks,
        }


def _node_json(node: NodeRecord) -> dict[str, Any]:
    """One node's entry in devnet.json."""
    return {
        "index": node.index,
        "node_id": node.node_id,
        "pub_key": node.pub_key.hex(),
        "ports": {"p2p": node.ports.p2p, "rpc": node.ports.rpc, "abci": node.ports.abci, "api": node.ports.api},
        "account": node.account,
        "compute_budget": node.compute_budget,
        "backend": node.backend,
        "processes": {k: {"pid": p.pid, "cmdline": list(p.cmdline)} for k, p in node.processes.items()},
    }


def _node_from_json(doc: dict[str, Any]) -> NodeRecord:
    """Parse one node's entry."""
    processes: dict[Kind, ProcessRecord] = {}
    for kind in KINDS:
        if kind in doc["processes"]:
            entry = doc["processes"][kind]
            processes[kind] = ProcessRecord(int(entry["pid"]), tuple(str(a) for a in entry["cmdline"]))
    return NodeRecord(
        index=int(doc["index"]),
        node_id=str(doc["node_id"]),
        pub_key=bytes.fromhex(doc["pub_key"]),
        ports=Ports(**{k: int(v) for k, v in doc["ports"].items()}),
        account=str(doc["account"]),
        compute_budget=float(doc["compute_budget"]),
        backend=str(doc.get("backend", DEFAULT_BACKEND)),
        processes=processes,
    )


def exists(directory: Path) -> bool:
    """Whether `directory` holds a devnet record."""
    return (directory / STATE_FILE).is_file()


def load(directory: Path) -> DevnetState:
    """Read `<directory>/devnet.json`; DevnetError if it is missing or malformed."""
    path = directory / STATE_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DevnetError(f"no devnet in {directory} (start one with `racenet devnet up --dir {directory}`)") from e
    except (OSError, ValueError) as e:
        raise DevnetError(f"cannot read {path}: {e}") from e
    try:
        if doc["version"] != STATE_VERSION:
            raise DevnetError(f"{path} has format version {doc['version']}, expected {STATE_VERSION}")
        return DevnetState(
            dir=directory.resolve(),
            chain_id=str(doc["chain_id"]),
            block_time=str(doc["block_time"]),
            base_port=int(doc["base_port"]),
            faucet=str(doc["faucet"]),
            nodes=[_node_from_json(n) for n in doc["nodes"]],
            dummy_tasks=bool(doc.get("dummy_tasks", False)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise DevnetError(f"{path} is malformed: {e}") from e
