"""`racenet node run`: the provider's daemon (the Race loop, and the API when `--api` is given)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import click

from racenet.cli.common import chain_client, fail, home_option, load_key, node_option
from racenet.ml.errors import MLError
from racenet.node.client import ClientError
from racenet.node.sender import TxSender


class HostPort(click.ParamType[tuple[str, int]]):
    """`host:port` (host defaults to 127.0.0.1)."""

    name = "host:port"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, int]:
        """Split `value` into (host, port); a one-line usage error if the port is missing or out of range."""
        if isinstance(value, tuple):
            return value
        host, _, port = str(value).rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            self.fail(f"expected host:port, got {value!r}", param, ctx)
        return host or "127.0.0.1", int(port)


class HttpUrl(click.ParamType[str]):
    """An http(s) URL with a host, such as an API's public address."""

    name = "url"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """`value` without a trailing slash; a one-line usage error if it is not an http(s) URL."""
        url = urlsplit(str(value))
        if url.scheme not in ("http", "https") or not url.netloc:
            self.fail(f"expected an http(s) URL such as http://203.0.113.7:26659, got {value!r}", param, ctx)
        return str(value).rstrip("/")


class BackendSpec(click.ParamType[str]):
    """`transformers` or `openai:<base URL>`."""

    name = "backend"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """`value` if it names a backend; a one-line usage error otherwise."""
        from racenet.node.daemon import check_backend_spec

        try:
            return check_backend_spec(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


compute_budget_option = click.option(
    "--compute-budget",
    type=click.FloatRange(0.01, 1.0),
    default=1.0,
    show_default=True,
    help="Fraction of time the miner computes in the Race (the rest it rests).",
)
threads_option = click.option(
    "--threads", type=click.IntRange(1, 256), help="CPU threads for torch [default: all cores]."
)


@click.group()
def node() -> None:
    """Run the provider's node daemon."""


@node.command("run")
@home_option
@node_option
@click.option("--key", "key_name", required=True, help="Keyring key of the node's account (registered Race node).")
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the Race loop keeps its progress [default: HOME/race/KEY].",
)
@compute_budget_option
@threads_option
@click.option("--api", type=HostPort(), help="host:port to serve the OpenAI-compatible API on (and execute requests).")
@click.option(
    "--public-api",
    "api_url",
    type=HttpUrl(),
    help="The URL other machines reach this API at, announced on chain [default: http://HOST:PORT of --api].",
)
@click.option(
    "--backend",
    type=BackendSpec(),
    default="transformers",
    show_default=True,
    help="What runs requests: `transformers` (SmolLM2 in-process, CPU) or `openai:<URL>` of an "
    "OpenAI-compatible server with logprobs, e.g. openai:http://127.0.0.1:8000/v1 (vLLM).",
)
@click.option(
    "--backend-api-key",
    envvar="RACENET_BACKEND_API_KEY",
    show_envvar=True,
    help="Bearer token for an `openai:` backend that asks for one (vLLM's --api-key); prefer the environment "
    "variable, since other users can see command lines.",
)
@click.option(
    "--cometbft-home",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The validator's CometBFT home: its config/beacon_key.json proves the spot checks this node owes, "
    "which it then runs with the API's model (without it, the node checks nothing and loses its check share).",
)
@click.option(
    "--dummy-tasks",
    is_flag=True,
    help="As a validator (--cometbft-home, --api, transformers backend), send dummy requests when user traffic is "
    "low, paid by issuer accounts derived from the beacon key, claimed back from the dummy pool (docs/dummy-tasks.md).",
)
@click.option(
    "--train-endpoint",
    type=HostPort(),
    help="host:port to take part in training jobs at (the endpoint `racenet train join` names): the node trains "
    "the jobs it joined, opens its audited segments and judges the segments it is drawn to check.",
)
def run(
    home: Path,
    node: str,
    key_name: str,
    state_dir: Path | None,
    compute_budget: float,
    threads: int | None,
    api: tuple[str, int] | None,
    api_url: str | None,
    backend: str,
    backend_api_key: str | None,
    cometbft_home: Path | None,
    dummy_tasks: bool,
    train_endpoint: tuple[str, int] | None,
) -> None:
    """Race every cycle with no manual step: mine, commit, reveal, validate others; serve the API (Ctrl-C stops)."""
    from racenet.node.beacon_agent import BeaconKeyError, load_or_create_secret
    from racenet.node.daemon import Daemon

    key = load_key(home, key_name)
    try:
        secret = None if cometbft_home is None else load_or_create_secret(cometbft_home)
        state = state_dir or home / "race" / key_name
        options = (backend, backend_api_key, secret, dummy_tasks, train_endpoint)
        daemon = Daemon(node, key, state, compute_budget, api, threads, *options, api_url=api_url)
    except (ClientError, MLError, BeaconKeyError) as e:
        fail(str(e))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    serving = f", API on {api[0]}:{api[1]} ({backend})" if api else ""
    click.echo(f"racing as {daemon.worker.address} against {node}{serving}", err=True)
    thread = threading.Thread(target=daemon.run, name="race")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    click.echo("stopped", err=True)


@node.command("register")
@home_option
@node_option
@click.option("--key", "key_name", required=True, help="Keyring key of the node's account.")
@click.option(
    "--cometbft-home",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The validator's CometBFT home (its config/priv_validator_key.json signs the registration).",
)
def register(home: Path, node: str, key_name: str, cometbft_home: Path) -> None:
    """Join the Race and the beacon: bind your account to your validator's consensus key and register the
    beacon key its `racenet app` signs with (`<cometbft-home>/config/beacon_key.json`, created if absent)."""
    from racenet.crypto.consensus_key import ConsensusKeyError
    from racenet.node.beacon_agent import BeaconKeyError
    from racenet.node.registration import registration_msgs

    key = load_key(home, key_name)
    with chain_client(node) as client:
        try:
            msgs = registration_msgs(cometbft_home, client.chain_id(), key.public_key.address)
        except (ConsensusKeyError, BeaconKeyError, OSError) as e:
            fail(str(e))
        outcome = TxSender(client, key).send(msgs)
    click.echo(f"registered in block {outcome.height}; the node races from the next cycle")
