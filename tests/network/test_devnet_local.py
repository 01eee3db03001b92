"""`racenet devnet` failures that need no running chain: busy ports, missing CometBFT, unknown dirs,
and the rule that `down` never signals a PID that now runs another program."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from racenet.cli.devnet import devnet
from racenet.devnet import process
from racenet.devnet.state import ProcessRecord
from tests.network.netutil import free_base_port

pytestmark = pytest.mark.network


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """Invoke `racenet devnet …` in-process."""
    return CliRunner(env=env).invoke(devnet, list(args))


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit status 1 with an `Error:` message containing every fragment, and no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr


def test_up_names_the_busy_port_and_creates_nothing(tmp_path: Path) -> None:
    """A port already bound on 127.0.0.1 stops `up` before any node home is written."""
    base = free_base_port(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 11))
        holder.listen()
        result = run("up", "--dir", str(tmp_path / "net"), "--validators", "2", "--base-port", str(base))
    assert_one_line_error(result, f"port {base + 11} (node2 RPC) on 127.0.0.1 is already in use")
    assert not (tmp_path / "net").exists()


def test_up_without_cometbft_points_to_make_install(tmp_path: Path) -> None:
    """A missing CometBFT binary is reported with the command that installs it."""
    result = run("up", "--dir", str(tmp_path / "net"), env={"RACENET_COMETBFT": str(tmp_path / "no-such-binary")})
    assert_one_line_error(result, "make install")
    assert not (tmp_path / "net").exists()


def test_commands_on_a_directory_without_devnet(tmp_path: Path) -> None:
    """status, down, logs and stop-node say there is no devnet and how to start one."""
    for args in (["status"], ["down"], ["logs"], ["stop-node", "1"]):
        assert_one_line_error(run(*args, "--dir", str(tmp_path)), f"no devnet in {tmp_path}", "racenet devnet up")


def test_up_refuses_a_non_empty_directory_that_is_not_a_devnet(tmp_path: Path) -> None:
    """`up` never writes node homes into an unrelated directory."""
    (tmp_path / "notes.txt").write_text("mine")
    assert_one_line_error(run("up", "--dir", str(tmp_path)), "holds no devnet")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_up_rejects_a_malformed_block_time(tmp_path: Path) -> None:
    """--block-time takes a CometBFT duration."""
    result = run("up", "--dir", str(tmp_path / "net"), "--block-time", "fast")
    assert result.exit_code == 2
    assert "1s, 500ms or 0.5s" in result.stderr


def test_stop_leaves_a_pid_running_another_command_alone(tmp_path: Path) -> None:
    """A recorded PID whose command line no longer matches is not signalled; the real record is."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    record = process.spawn([sleep, "60"], tmp_path / "sleep.log", {})
    try:
        stale = ProcessRecord(record.pid, ("/usr/bin/cometbft", "start", "--home", "/elsewhere"))
        assert "left alone" in process.stop(stale, timeout=5)
        assert process.is_running(record)
        assert process.stop(record, timeout=5) == "stopped"
        assert not process.is_running(record)
        assert process.stop(record, timeout=5) == "was not running"
    finally:
        process.stop(record, timeout=5, hard=True)
