"""`racenet devnet …`: a local multi-validator network on 127.0.0.1 (CometBFT + racenet App per node)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from racenet.chain.modules.bank.denom import format_amount
from racenet.cli.common import echo_json, fail, json_option, table_console
from racenet.devnet import FAUCET_KEY, Devnet, DevnetError, NodeStatus
from racenet.devnet.network import FAUCET_NICOIN, tail_lines
from racenet.devnet.state import HOST, KINDS, Kind, NodeRecord
from racenet.devnet.state import exists as devnet_exists

DEFAULT_VALIDATORS = 4
DEFAULT_BASE_PORT = 26656
DEFAULT_BLOCK_TIME = "1s"
READY_HEIGHT = 2
FOLLOW_POLL_S = 0.5
_DURATION = re.compile(r"^[0-9]+(\.[0-9]+)?(ms|s)$")

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".devnet"),
    show_default=True,
    envvar="RACENET_DEVNET_DIR",
    help="Directory holding the devnet's nodes, keyring and devnet.json.",
)
timeout_option = click.option(
    "--timeout", default=120.0, show_default=True, help="Seconds to wait for the nodes to produce blocks."
)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Report expected devnet failures as one line and exit status 1."""
    try:
        yield
    except DevnetError as e:
        fail(str(e))


def _block_time(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Accept a CometBFT duration such as `1s`, `500ms` or `0.5s`."""
    if value is not None and not _DURATION.match(value):
        raise click.BadParameter("use a duration such as 1s, 500ms or 0.5s")
    return value


def _backends(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[int, str]:
    """Parse `2=openai:http://127.0.0.1:8080/v1` options into backend specs by node index."""
    if not value:
        return {}
    from racenet.node.daemon import check_backend_spec

    parsed: dict[int, str] = {}
    for item in value:
        index, _, spec = item.partition("=")
        try:
            parsed[int(index)] = check_backend_spec(spec)
        except ValueError as e:
            raise click.BadParameter(f"use NODE=SPEC such as 2=openai:http://127.0.0.1:8080/v1 ({e})") from e
    return parsed


def _budgets(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    """Parse `0.25,0.5,1` into fractions."""
    if value is None:
        return None
    try:
        return [float(x) for x in value.split(",")]
    except ValueError as e:
        raise click.BadParameter("use comma-separated fractions such as 0.5,1") from e


@click.group()
def devnet() -> None:
    """Run a local multi-validator network on 127.0.0.1."""


@devnet.command()
@dir_option
@click.option("--validators", type=click.IntRange(1, 50), help=f"Number of validators [default: {DEFAULT_VALIDATORS}].")
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65000),
    help="First port; node i uses base+10(i-1) + 0 P2P, 1 RPC, 2 ABCI, 3 API, 4 training "
    f"[default: {DEFAULT_BASE_PORT}].",
)
@click.option("--block-time", callback=_block_time, help=f"Time between blocks [default: {DEFAULT_BLOCK_TIME}].")
@click.option(
    "--compute-budgets",
    callback=_budgets,
    help="Fraction of time each node's miner computes, comma-separated, e.g. 0.25,0.5,0.75,1; 0 runs no Race "
    "daemon on that node [default: 1 each].",
)
@click.option(
    "--dummy-tasks",
    is_flag=True,
    help="Validators send dummy requests when user traffic is low (kept for the devnet's life; docs/dummy-tasks.md).",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    callback=_backends,
    help="NODE=SPEC: what node NODE's daemon serves with (`racenet node run --backend`), e.g. "
    "2=openai:http://127.0.0.1:8080/v1 (kept for the devnet's life; repeatable) [default: transformers].",
)
@timeout_option
def up(
    directory: Path,
    validators: int | None,
    base_port: int | None,
    block_time: str | None,
    compute_budgets: list[float] | None,
    dummy_tasks: bool,
    backends: dict[int, str],
    timeout: float,
) -> None:
    """Create (first time) and start the devnet, wait for blocks, print the endpoints."""
    with _user_errors():
        if devnet_exists(directory):
            net = Devnet.open(directory)
            _check_same_layout(net, validators, base_port, block_time)
            if not net.stopped_nodes():
                click.echo(f"The devnet in {directory} is already running.")
                _print_endpoints(net)
                return
        else:
            net = Devnet.create(
                directory,
                validators or DEFAULT_VALIDATORS,
                base_port or DEFAULT_BASE_PORT,
                block_time or DEFAULT_BLOCK_TIME,
                compute_budgets,
                dummy_tasks,
                backends,
            )
        try:
            _wait_until_live(net, net.start(), timeout)
        except DevnetError as e:
            raise DevnetError(f"{e}\nStop the devnet with: racenet devnet down --dir {directory}") from e
    _print_endpoints(net)
    _print_usage(net, directory)


def _check_same_layout(net: Devnet, validators: int | None, base_port: int | None, block_time: str | None) -> None:
    """Refuse options that contradict an existing devnet (it restarts from its own record)."""
    s = net.state
    recorded = {"--validators": len(s.nodes), "--base-port": s.base_port, "--block-time": s.block_time}
    asked = {"--validators": validators, "--base-port": base_port, "--block-time": block_time}
    for option, value in asked.items():
        if value is not None and value != recorded[option]:
            raise DevnetError(
                f"the devnet in {s.dir} was created with {option} {recorded[option]}; "
                "restart it without that option, or remove it with `racenet devnet down --purge`"
            )


def _wait_until_live(net: Devnet, nodes: list[NodeRecord], timeout: float) -> None:
    """Wait until the nodes reach height 2 and then commit one more block.

    The second step matters on a restart: a resumed node reports its old height at once,
    before consensus has produced anything new.
    """
    deadline = time.monotonic() + timeout
    heights = _wait_with_spinner(net, READY_HEIGHT, timeout, nodes)
    newest = max((h for h in heights.values() if h is not None), default=READY_HEIGHT)
    _wait_with_spinner(net, newest + 1, max(deadline - time.monotonic(), 1.0), nodes)


def _wait_with_spinner(net: Devnet, height: int, timeout: float, nodes: list[NodeRecord]) -> dict[str, int | None]:
    """Wait for `nodes` to reach `height`, showing every node's height on a spinner line."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("starting nodes", total=None)

        def show(heights: dict[str, int | None]) -> None:
            """Put the latest heights on the spinner line."""
            text = "  ".join(f"{name}: {'-' if h is None else h}" for name, h in heights.items())
            progress.update(task, description=f"waiting for height {height}  {text}")

        return net.wait_for_height(height, timeout, nodes, show)


def _print_endpoints(net: Devnet) -> None:
    """A table of every node's ports (all on 127.0.0.1) and process IDs, 80 columns wide."""
    table = Table(title=f"{net.state.chain_id}: {len(net.state.nodes)} validators on {HOST}")
    for column in ("node", "P2P", "RPC", "ABCI", "API", "training", "PIDs app/cometbft/race"):
        table.add_column(column)
    for node in net.state.nodes:
        daemon = "node" in node.kinds
        ports = node.ports
        api, training = (str(ports.api), str(ports.training)) if daemon else ("-", "-")
        pids = "/".join(_pid(node, k) for k in KINDS)
        table.add_row(node.name, str(ports.p2p), str(ports.rpc), str(ports.abci), api, training, pids)
    table_console(wide=False).print(table)


def _pid(node: NodeRecord, kind: Kind) -> str:
    """A recorded PID as text ('-' if none)."""
    record = node.processes.get(kind)
    return "-" if record is None else str(record.pid)


def _print_usage(net: Devnet, directory: Path) -> None:
    """How to use the faucet (its passphrase is empty: devnet only) and stop the network."""
    rpc = net.state.nodes[0].rpc_url
    click.echo(f"faucet ({FAUCET_KEY}, empty passphrase, devnet only): {net.state.faucet}")
    click.echo(f"  holds a devnet-only grant of {format_amount(FAUCET_NICOIN)} from the founders' allocation")
    click.echo(f"  send:  RACENET_PASSPHRASE= racenet tx send --home {directory} --node {rpc} faucet <address> 1icon")
    click.echo(f"  stop:  racenet devnet down --dir {directory}")


@devnet.command()
@dir_option
@json_option
def status(directory: Path, as_json: bool) -> None:
    """Height, app hash, endpoints and processes of every node."""
    with _user_errors():
        net = Devnet.open(directory)
        statuses = net.status()
    if as_json:
        echo_json(
            {"chain_id": net.state.chain_id, "dir": str(net.state.dir), "nodes": [_status_json(s) for s in statuses]}
        )
        return
    click.echo(f"{net.state.chain_id} in {net.state.dir}, every port on {HOST}")
    table = Table()
    for column in ("node", "height", "app hash", "RPC", "API", "PIDs app/cometbft/race"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            s.node.name,
            "-" if s.height is None else str(s.height),
            (s.app_hash or "-")[:12],
            str(s.node.ports.rpc),
            str(s.node.ports.api) if "node" in s.node.kinds else "-",
            "/".join(_pid_alive(s, k) for k in KINDS),
        )
    table_console(wide=False).print(table)


def _status_json(s: NodeStatus) -> dict[str, Any]:
    """One node's `status --json` entry."""
    return {
        "name": s.node.name,
        "height": s.height,
        "app_hash": s.app_hash,
        "rpc": s.node.rpc_url,
        "abci": s.node.abci_address,
        "p2p": s.node.p2p_address,
        "api": s.node.api_url if "node" in s.node.kinds else None,
        "node_id": s.node.node_id,
        "validator_pub_key": s.node.pub_key.hex(),
        "account": s.node.account,
        "compute_budget": s.node.compute_budget,
        "pids": {k: (s.node.processes[k].pid if k in s.node.processes else None) for k in s.node.kinds},
        "alive": s.alive,
        "error": s.error,
    }


def _pid_alive(s: NodeStatus, kind: Kind) -> str:
    """`PID` if alive, `PID (dead)` if recorded but gone, '-' if not started."""
    text = _pid(s.node, kind)
    return text if s.alive.get(kind) or text == "-" else f"{text} (dead)"


@devnet.command()
@dir_option
@click.option("--purge", is_flag=True, help="Also delete the devnet directory (all chain data and the faucet key).")
@click.option("--kill", is_flag=True, help="SIGKILL at once instead of SIGTERM first.")
def down(directory: Path, purge: bool, kill: bool) -> None:
    """Stop exactly the processes the devnet started; keep its data unless --purge."""
    with _user_errors():
        net = Devnet.open(directory)
        report = net.stop(hard=kill)
        for line in report:
            click.echo(line)
        if not report:
            click.echo(f"The devnet in {directory} was not running.")
        if purge:
            net.purge()
            click.echo(f"Deleted {net.state.dir}.")


@devnet.command("stop-node")
@dir_option
@click.option("--kill", is_flag=True, help="SIGKILL at once (a crash) instead of SIGTERM first.")
@click.argument("index", type=int)
def stop_node(directory: Path, kill: bool, index: int) -> None:
    """Stop node INDEX (1-based): its daemon, CometBFT and App processes."""
    with _user_errors():
        net = Devnet.open(directory)
        for line in net.stop_node(net.state.node(index), hard=kill) or [f"node{index} was not running"]:
            click.echo(line)


@devnet.command("restart-node")
@dir_option
@timeout_option
@click.argument("index", type=int)
def restart_node(directory: Path, timeout: float, index: int) -> None:
    """Restart node INDEX (1-based) and wait until it has caught up with the others."""
    with _user_errors():
        net = Devnet.open(directory)
        node = net.state.node(index)
        for line in net.stop_node(node):
            click.echo(line)
        net.start([node])
        target = max((h for n, h in net.heights().items() if n != node.name and h is not None), default=1)
        _wait_with_spinner(net, target, timeout, [node])
    click.echo(f"{node.name} restarted and at height ≥ {target}: {node.rpc_url}")


@devnet.command()
@dir_option
@click.option("--app", "kinds", flag_value="app", help="Only the racenet App logs.")
@click.option("--cometbft", "kinds", flag_value="cometbft", help="Only the CometBFT logs.")
@click.option("--daemon", "kinds", flag_value="node", help="Only the node daemon logs (Race loop, API).")
@click.option("-n", "--lines", default=40, show_default=True, help="Lines to show from the end of each log.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.argument("node", required=False)
def logs(directory: Path, kinds: str | None, lines: int, follow: bool, node: str | None) -> None:
    """Show the last lines of the logs of NODE (2 or node2; default: every node)."""
    with _user_errors():
        net = Devnet.open(directory)
        nodes = net.state.nodes if node is None else [net.state.node(_node_index(node))]
    selected = [k for k in KINDS if kinds in (None, k)]
    paths = {f"{n.name} {k}": net.state.log_path(n, k) for n in nodes for k in selected}
    prefix = len(paths) > 1
    for label, path in paths.items():
        for line in tail_lines(path, lines):
            click.echo(f"{label} | {line}" if prefix else line)
    if follow:
        _follow(paths, prefix)


def _node_index(text: str) -> int:
    """`2` or `node2` → 2."""
    digits = text.removeprefix("node")
    if not digits.isdigit():
        fail(f"{text!r} is not a node: use its number (2) or name (node2)")
    return int(digits)


def _follow(paths: dict[str, Path], prefix: bool) -> None:
    """Print lines appended to the logs until Ctrl-C."""
    offsets = {label: path.stat().st_size if path.exists() else 0 for label, path in paths.items()}
    partial = dict.fromkeys(paths, "")
    try:
        while True:
            for label, path in paths.items():
                offsets[label], text = _read_from(path, offsets[label])
                *complete, partial[label] = (partial[label] + text).split("\n")
                for line in complete:
                    click.echo(f"{label} | {line}" if prefix else line)
            time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        return


def _read_from(path: Path, offset: int) -> tuple[int, str]:
    """Text appended to a file since `offset`, and the new offset (restarts at 0 if truncated)."""
    try:
        with path.open("rb") as f:
            if f.seek(0, 2) < offset:
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return 0, ""
    return offset + len(data), data.decode(errors="replace")
