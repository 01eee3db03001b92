"""A local multi-validator racenet network: N CometBFT nodes, each with its own racenet App, on 127.0.0.1.

Layout of a devnet directory:

    <dir>/devnet.json            nodes, ports, PIDs (see `racenet.devnet.state`)
    <dir>/keyring/faucet.json    the funded key
    <dir>/keyring/node<i>.json   node i's account: its Race participant (registered at genesis)
    <dir>/node<i>/config/        CometBFT config, keys and the shared genesis.json
    <dir>/node<i>/data/          CometBFT stores and the App's app.db
    <dir>/node<i>/race/          the Race daemon's per-cycle progress
    <dir>/node<i>/logs/          app.log, cometbft.log and node.log

Each node runs three processes: CometBFT, the racenet App behind ABCI, and `racenet node run`,
the daemon that races every cycle (its compute budget is recorded per node).

The faucet and node keys' passphrase is the empty string: a devnet-only convenience so scripts
and tests can sign without a prompt. Never fund such a key on a real network.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.modules import dummy, gov, pool, tokenomics
from racenet.chain.modules.bank import Balance, BankGenesis, Escrow
from racenet.chain.modules.bank.denom import NICOIN_PER
from racenet.chain.modules.beacon import BeaconGenesis, BeaconKey
from racenet.chain.modules.inference import InferenceGenesis, ModelEntry
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.crypto.address import decode_address
from racenet.crypto.keyring import Keyring, KeyringError
from racenet.devnet import cometbft, process
from racenet.devnet.commands import app_argv, daemon_argv
from racenet.devnet.errors import DevnetError
from racenet.devnet.state import DEFAULT_BACKEND, HOST, KINDS, DevnetState, Kind, NodeRecord, Ports
from racenet.devnet.state import load as load_state
from racenet.node.beacon_agent import load_or_create_secret, register_key_msg
from racenet.node.client import ChainClient, ClientError
from racenet.node.dummy import dummy_secret, issuer_key

CHAIN_ID = "racenet-devnet"
VALIDATOR_POWER = 10
FAUCET_KEY = "faucet"
DEVNET_PASSPHRASE = ""
FAUCET_NICOIN = 10_000_000 * NICOIN_PER["icon"]
"""The faucet's devnet-only grant; every devnet grant comes out of the founders' allocation (docs/tokenomics.md)."""
APP_READY_TIMEOUT_S = 120.0
"""Generous: an App imports torch, and six of them starting on a busy 2-core machine take over half a minute."""
STOP_TIMEOUT_S = 10.0
RPC_TIMEOUT_S = 2.0
POLL_S = 0.25
LOG_TAIL_LINES = 15
STOP_ORDER: tuple[Kind, ...] = ("node", "cometbft", "app")
NODE_NICOIN = 1_000 * NICOIN_PER["icon"]
ISSUER_ACCOUNTS = 64
"""Issuer accounts funded per validator for dummy requests: each pays for 2 cycles, so 128 cycles in all."""
ISSUER_NICOIN = 10 * NICOIN_PER["icon"]
"""A devnet-only grant to each issuer account at genesis, as a faucet would fund an ordinary user."""
DUMMY_POOL_NICOIN = 10_000 * NICOIN_PER["icon"]
"""The dummy pool the validators' dummy requests are reimbursed from (a devnet-only grant)."""
DEVNET_RACE_PARAMS = RaceParams(preset="tiny", race_blocks=14, reveal_blocks=4, vote_blocks=4, escalation_blocks=3)
DEVNET_GOV_PARAMS = gov.Params(deposit_blocks=200, voting_blocks=20)
"""Short governance periods, so a devnet proposal is decided within a minute of its deposit."""
MODEL = "SmolLM2-135M-Instruct"
MODEL_UNITS_PER_TOKEN = 1

Progress = Callable[[dict[str, int | None]], None]
"""Called while waiting, with each node's latest height (None: not answering yet)."""


@dataclass(frozen=True)
class NodeStatus:
    """What `status` reports about one node."""

    node: NodeRecord
    height: int | None
    app_hash: str | None
    alive: dict[Kind, bool]
    error: str | None


def port_in_use(port: int) -> bool:
    """Whether 127.0.0.1:port cannot be bound (with SO_REUSEADDR, as CometBFT and asyncio bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def check_ports_free(nodes: dict[str, Ports]) -> None:
    """DevnetError naming the first of these nodes' ports that is already taken."""
    for name, ports in nodes.items():
        roles = (("P2P", ports.p2p), ("RPC", ports.rpc), ("ABCI", ports.abci), ("API", ports.api))
        for role, port in (*roles, ("training", ports.training)):
            if port_in_use(port):
                raise DevnetError(
                    f"port {port} ({name} {role}) on {HOST} is already in use; "
                    "stop what holds it or choose another --base-port"
                )


def accepts_connections(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail_lines(path: Path, count: int = LOG_TAIL_LINES) -> list[str]:
    """The last `count` lines of a log file ([] if it does not exist yet)."""
    try:
        return path.read_text(errors="replace").splitlines()[-count:] if count > 0 else []
    except OSError:
        return []


def config_settings(state: DevnetState, node: NodeRecord) -> cometbft.Settings:
    """config.toml for a loopback validator that peers with every other node of the devnet."""
    peers = ",".join(other.peer_address for other in state.nodes if other is not node)
    return {
        ("", "moniker"): node.name,
        ("", "proxy_app"): node.abci_address,
        ("rpc", "laddr"): f"tcp://{HOST}:{node.ports.rpc}",
        ("p2p", "laddr"): node.p2p_address,
        ("p2p", "persistent_peers"): peers,
        ("p2p", "pex"): False,
        ("p2p", "addr_book_strict"): False,
        ("p2p", "allow_duplicate_ip"): True,
        ("consensus", "timeout_commit"): state.block_time,
        ("consensus", "create_empty_blocks"): True,
        ("tx_index", "indexer"): "kv",
        ("instrumentation", "prometheus"): False,
    }


def build_genesis(state: DevnetState, race: RaceParams = DEVNET_RACE_PARAMS) -> Genesis:
    """One genesis for all nodes: validator keys at equal power (their genesis Race weight),
    registered Race nodes with funded accounts and beacon keys (each node's secret stays in its home),
    vote extensions on from the first block (they carry the beacon), a funded faucet, and the
    dummy pool and each validator's issuer accounts (devnet-only grants). The supply follows Appendix E: the
    provider reward and liquidity pool in full, the founders' allocation less the devnet grants, no core incentive
    (tokenomics mints it)."""
    faucet = decode_address(state.faucet)
    accounts = [decode_address(n.account) for n in state.nodes]
    race_nodes = tuple(RaceNode(a, n.pub_key, VALIDATOR_POWER) for a, n in zip(accounts, state.nodes, strict=True))
    beacon_keys = []
    issuers = []
    for address, node in zip(accounts, state.nodes, strict=True):
        secret = load_or_create_secret(state.home(node))
        msg = register_key_msg(secret, state.chain_id, address)
        beacon_keys.append(BeaconKey(address, msg.key, msg.proof))
        issuers += [issuer_key(dummy_secret(secret), i).public_key.address for i in range(ISSUER_ACCOUNTS)]
    grants = (
        Balance(faucet, FAUCET_NICOIN),
        *(Balance(a, NODE_NICOIN) for a in accounts),
        *(Balance(a, ISSUER_NICOIN) for a in issuers),
    )
    granted = sum(int(g.amount) for g in grants) + DUMMY_POOL_NICOIN
    balances = (*tokenomics.allocations(granted), *grants)
    return Genesis(
        chain_id=state.chain_id,
        genesis_time=int(time.time()),
        validators=[GenesisValidator(n.pub_key, VALIDATOR_POWER, n.name) for n in state.nodes],
        consensus_params=cometbft.consensus_params_with_vote_extensions(state.home(state.nodes[0])),
        app_state=AppState(
            bank=BankGenesis(balances=balances, escrows=(Escrow(dummy.NAME, dummy.POOL_ID, DUMMY_POOL_NICOIN),)),
            race=RaceGenesis(params=race, nodes=race_nodes),
            beacon=BeaconGenesis(keys=tuple(beacon_keys)),
            inference=InferenceGenesis(
                params=InferenceParams(allow_private_endpoints=True),  # devnet executors listen on loopback
                models=(ModelEntry(MODEL, MODEL_UNITS_PER_TOKEN),),
            ),
            gov=gov.GovGenesis(params=DEVNET_GOV_PARAMS),
            pool=pool.PoolGenesis(params=pool.Params(bridge=faucet)),  # devnet-only: the faucet attests usdt deposits
        ),
    )


class Devnet:
    """Create, start, watch and stop the devnet recorded in one directory."""

    def __init__(self, state: DevnetState) -> None:
        """Wrap a loaded record."""
        self.state = state

    @classmethod
    def open(cls, directory: Path) -> Devnet:
        """The existing devnet in `directory`."""
        return cls(load_state(directory))

    @classmethod
    def create(
        cls,
        directory: Path,
        validators: int,
        base_port: int,
        block_time: str,
        compute_budgets: list[float] | None = None,
        dummy_tasks: bool = False,
        backends: dict[int, str] | None = None,
    ) -> Devnet:
        """Initialise N node homes, the faucet and node keys and the shared genesis (nothing is started).

        `backends` maps a node's index to what its daemon serves with (`racenet node run --backend`; default
        transformers), e.g. `{2: "openai:http://127.0.0.1:8080/v1"}`.
        """
        budgets = compute_budgets or [1.0] * validators
        if not set(backends or {}) <= set(range(1, validators + 1)):
            raise DevnetError(f"backends name nodes outside 1..{validators}: {sorted(backends or {})}")
        if len(budgets) != validators or not all(0 <= b <= 1 for b in budgets):
            raise DevnetError(f"give {validators} compute budgets in [0, 1] (0: no Race daemon), one per validator")
        if validators < 1:
            raise DevnetError("a devnet needs at least one validator")
        if directory.exists() and any(directory.iterdir()):
            raise DevnetError(f"{directory} exists and holds no devnet; choose another --dir or empty it")
        binary = cometbft.find_cometbft()
        cometbft.check_version(binary)
        ports = [Ports.for_node(base_port, i) for i in range(1, validators + 1)]
        check_ports_free({f"node{i}": p for i, p in enumerate(ports, start=1)})
        directory.mkdir(parents=True, exist_ok=True)
        try:
            return cls._initialise(
                directory.resolve(), binary, base_port, ports, block_time, budgets, dummy_tasks, backends or {}
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    @classmethod
    def _initialise(
        cls,
        directory: Path,
        binary: Path,
        base_port: int,
        ports: list[Ports],
        block_time: str,
        budgets: list[float],
        dummy_tasks: bool,
        backends: dict[int, str],
    ) -> Devnet:
        """Write homes, keys, configs and genesis into an empty directory; record them last."""
        keyring = Keyring(directory / "keyring")
        try:
            faucet, _ = keyring.add(FAUCET_KEY, DEVNET_PASSPHRASE)
            accounts = [keyring.add(f"node{i}", DEVNET_PASSPHRASE)[0].address for i in range(1, len(ports) + 1)]
        except KeyringError as e:
            raise DevnetError(f"cannot create the devnet keys: {e}") from e
        nodes = []
        for index, node_ports in enumerate(ports, start=1):
            home = directory / f"node{index}"
            cometbft.init_home(binary, home)
            pub_key = cometbft.validator_pubkey(home)
            node_id = cometbft.node_id(binary, home)
            backend = backends.get(index, DEFAULT_BACKEND)
            nodes.append(
                NodeRecord(index, node_id, pub_key, node_ports, accounts[index - 1], budgets[index - 1], backend)
            )
        state = DevnetState(directory, CHAIN_ID, block_time, base_port, faucet.address, nodes, dummy_tasks)
        genesis = build_genesis(state)
        for node in nodes:
            genesis.save(state.home(node) / "config" / "genesis.json")
            cometbft.configure(state.home(node), config_settings(state, node))
        state.save()
        return cls(state)

    def running(self, node: NodeRecord, kind: Kind) -> bool:
        """Whether the node's app or cometbft process is alive."""
        record = node.processes.get(kind)
        return record is not None and process.is_running(record)

    def stopped_nodes(self) -> list[NodeRecord]:
        """Nodes missing at least one of their processes."""
        return [n for n in self.state.nodes if not all(self.running(n, k) for k in n.kinds)]

    def start(self, nodes: list[NodeRecord] | None = None) -> list[NodeRecord]:
        """Start the given nodes (default: all) that are not fully running; returns the ones started.

        A half-running node (one process died) is stopped first, so it restarts whole.
        """
        stopped = {n.index for n in self.stopped_nodes()}
        todo = [n for n in (self.state.nodes if nodes is None else nodes) if n.index in stopped]
        if not todo:
            return []
        binary = cometbft.find_cometbft()
        for node in todo:
            self.stop_node(node)
        check_ports_free({n.name: n.ports for n in todo})
        for node in todo:
            self._start_app(node)
        for node in todo:
            self._wait_app_listening(node)
            self._spawn(node, "cometbft", [str(binary), "start", "--home", str(self.state.home(node))])
        for node in todo:
            if "node" in node.kinds:
                self._start_daemon(node)
        return todo

    def _start_daemon(self, node: NodeRecord) -> None:
        """Start `racenet node run`, the node's Race daemon, signing with its devnet account."""
        threads = max(1, (os.cpu_count() or 1) // len(self.state.nodes))
        options = ["--threads", str(threads), "--train-endpoint", node.training_endpoint]
        options += ["--cometbft-home", str(self.state.home(node)), "--backend", node.backend]
        options += ["--dummy-tasks"] if self.state.dummy_tasks else []
        state = self.state.home(node) / "race"
        api = f"{HOST}:{node.ports.api}"
        argv = daemon_argv(self.state.dir, node.name, node.rpc_url, state, node.compute_budget, api, options)
        self._spawn(node, "node", argv)

    def _start_app(self, node: NodeRecord) -> None:
        """Start the racenet App that serves this node's ABCI port."""
        self._spawn(node, "app", app_argv(self.state.home(node), node.ports.abci))

    def _spawn(self, node: NodeRecord, kind: Kind, argv: list[str]) -> None:
        """Start one process and record it at once, so `down` can stop it whatever happens next."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RACENET_PASSPHRASE": DEVNET_PASSPHRASE}
        node.processes[kind] = process.spawn(argv, self.state.log_path(node, kind), env)
        self.state.save()

    def _wait_app_listening(self, node: NodeRecord) -> None:
        """Block until the App accepts ABCI connections (CometBFT exits if it cannot connect)."""
        deadline = time.monotonic() + APP_READY_TIMEOUT_S
        while not accepts_connections(node.ports.abci):
            self._check_alive(node, "app")
            if time.monotonic() > deadline:
                raise DevnetError(
                    f"{node.name} app is not listening on {node.abci_address} after {APP_READY_TIMEOUT_S:.0f}s; "
                    + self._see(node)
                )
            time.sleep(POLL_S)

    def _check_alive(self, node: NodeRecord, kind: Kind) -> None:
        """DevnetError with the end of its log if a process this devnet started has died."""
        if not self.running(node, kind):
            log = self.state.log_path(node, kind)
            raise DevnetError(f"{node.name} {kind} exited; last lines of {log}:\n" + "\n".join(tail_lines(log)))

    def _see(self, node: NodeRecord) -> str:
        """A hint naming a node's log files."""
        return f"see {self.state.log_path(node, 'app')} and {self.state.log_path(node, 'cometbft')}"

    def heights(self) -> dict[str, int | None]:
        """Every node's latest block height (None if its RPC does not answer)."""
        return {n.name: self.height(n) for n in self.state.nodes}

    def height(self, node: NodeRecord) -> int | None:
        """A node's latest block height, or None if its RPC does not answer."""
        client = ChainClient(node.rpc_url, timeout=RPC_TIMEOUT_S)
        try:
            return client.height()
        except (ClientError, KeyError, ValueError):
            return None
        finally:
            client.close()

    def wait_for_height(
        self, height: int, timeout: float, nodes: list[NodeRecord] | None = None, progress: Progress | None = None
    ) -> dict[str, int | None]:
        """Wait until every given node (default: all) reports at least `height`; fail fast if one dies."""
        watched = self.state.nodes if nodes is None else nodes
        deadline = time.monotonic() + timeout
        while True:
            heights = {n.name: self.height(n) for n in watched}
            if progress is not None:
                progress(heights)
            if all(h is not None and h >= height for h in heights.values()):
                return heights
            for node in watched:
                for kind in node.kinds:
                    self._check_alive(node, kind)
            if time.monotonic() > deadline:
                slow = [name for name, h in heights.items() if h is None or h < height]
                node = next(n for n in watched if n.name == slow[0])
                raise DevnetError(
                    f"{', '.join(slow)} did not reach height {height} within {timeout:.0f}s "
                    f"(heights: {heights}); {self._see(node)}"
                )
            time.sleep(POLL_S)

    def stop_node(self, node: NodeRecord, hard: bool = False) -> list[str]:
        """Stop a node's processes in STOP_ORDER: the daemon, then CometBFT (so it never sees its App vanish
        mid-block), then the App."""
        report = []
        for kind in STOP_ORDER:
            record = node.processes.get(kind)
            if record is None:
                continue
            outcome = process.stop(record, STOP_TIMEOUT_S, hard)
            report.append(f"{node.name} {kind} (PID {record.pid}): {outcome}")
            del node.processes[kind]
            self.state.save()
        return report

    def stop(self, hard: bool = False) -> list[str]:
        """Stop every recorded process of the devnet."""
        return [line for node in self.state.nodes for line in self.stop_node(node, hard)]

    def status(self) -> list[NodeStatus]:
        """Height, app hash and process liveness of every node."""
        return [self._node_status(n) for n in self.state.nodes]

    def _node_status(self, node: NodeRecord) -> NodeStatus:
        """One node's status from its RPC and /proc."""
        alive = {k: self.running(node, k) for k in node.kinds}
        client = ChainClient(node.rpc_url, timeout=RPC_TIMEOUT_S)
        try:
            sync = client.status()["sync_info"]
            return NodeStatus(node, int(sync["latest_block_height"]), str(sync["latest_app_hash"]), alive, None)
        except (ClientError, KeyError, ValueError) as e:
            return NodeStatus(node, None, None, alive, str(e))
        finally:
            client.close()

    def purge(self) -> None:
        """Delete the devnet directory; refused while any recorded process still runs."""
        if any(self.running(n, k) for n in self.state.nodes for k in KINDS):
            raise DevnetError("processes are still running; stop them with `racenet devnet down` first")
        shutil.rmtree(self.state.dir)
