"""Fixtures of the network suite: one 4-validator devnet per test module, always torn down."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from racenet.cli.chain import CHECK_INVARIANTS_ENV
from racenet.cli.devnet import devnet
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.devnet import DEVNET_PASSPHRASE, FAUCET_KEY, Devnet
from racenet.devnet.state import exists
from racenet.node.client import ChainClient
from tests.network.netutil import free_base_port

os.environ[CHECK_INVARIANTS_ENV] = "1"  # every devnet App asserts money conservation after each block

VALIDATORS = 4
BLOCK_TIME = "500ms"
RPC_TIMEOUT_S = 10.0


def stop_devnet(directory: Path) -> None:
    """Stop every process the devnet in `directory` recorded (no-op if it never got that far)."""
    if exists(directory):
        Devnet.open(directory).stop()


@contextmanager
def running_devnet(
    tmp_path_factory: pytest.TempPathFactory, name: str, budgets: str, *options: str, validators: int = VALIDATORS
) -> Iterator[Path]:
    """The directory of a devnet started with `racenet devnet up` (`budgets`: each node's compute budget, 0 for no
    Race daemon; `options`: more of its options); its processes are stopped on leaving the block, also when setup or
    a test fails."""
    directory = tmp_path_factory.mktemp(name) / "net"
    try:
        args = ["up", "--dir", str(directory), "--validators", str(validators), "--block-time", BLOCK_TIME]
        args += ["--compute-budgets", budgets, "--base-port", str(free_base_port(validators)), *options]
        result = CliRunner().invoke(devnet, args)
        assert result.exit_code == 0, result.output
        yield directory
    finally:
        stop_devnet(directory)


@pytest.fixture(scope="module")
def devnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running 4-validator devnet without Race daemons (consensus tests: tallies would change validator power
    every cycle)."""
    with running_devnet(tmp_path_factory, "devnet", ",".join(["0"] * VALIDATORS)) as directory:
        yield directory


@pytest.fixture
def net(devnet_dir: Path) -> Devnet:
    """The devnet as currently recorded (re-read per test: tests restart nodes)."""
    return Devnet.open(devnet_dir)


@pytest.fixture(scope="module")
def clients(devnet_dir: Path) -> Iterator[list[ChainClient]]:
    """One RPC client per node, in node order (clients[0] is node1)."""
    made = [ChainClient(node.rpc_url, timeout=RPC_TIMEOUT_S) for node in Devnet.open(devnet_dir).state.nodes]
    yield made
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def faucet(devnet_dir: Path) -> PrivateKey:
    """The devnet's funded key."""
    return Keyring(devnet_dir / "keyring").load(FAUCET_KEY, DEVNET_PASSPHRASE)
