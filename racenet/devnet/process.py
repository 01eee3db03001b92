"""Detached processes: start them in their own session, recognise them by PID + command line, stop them.

Processes are started with `posix_spawn` in a new session, so they outlive the `racenet devnet up`
that started them and a Ctrl-C in its terminal does not reach them. A PID alone is not an
identity (the kernel recycles PIDs), so every check compares /proc/<pid>/cmdline with the
command line recorded at start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from racenet.devnet.errors import DevnetError
from racenet.devnet.state import ProcessRecord

POLL_S = 0.1
CMDLINE_TIMEOUT_S = 5.0


def read_cmdline(pid: int) -> tuple[str, ...] | None:
    """The command line of a live process, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return tuple(arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0"))


def is_running(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs (same PID, same command line)."""
    reap(record.pid)
    return read_cmdline(record.pid) == record.cmdline


def has_exited(record: ProcessRecord) -> bool:
    """Whether the recorded process has fully exited, so its sockets are closed.

    An exiting process loses its command line (its memory) before it closes its files, and a
    multi-threaded one shows as a zombie while its other threads still hold them open. So it
    counts as gone only once /proc shows a zombie with no thread left besides the leader, or
    no process at all (or one running another command: the PID was reused).
    """
    reap(record.pid)
    proc = Path(f"/proc/{record.pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        threads = os.listdir(proc / "task")
    except OSError:
        return True
    if state in ("Z", "X"):
        return threads == [str(record.pid)]
    return read_cmdline(record.pid) not in (None, record.cmdline)


def reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own exited child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str]) -> ProcessRecord:
    """Start argv[0] (an absolute path) detached, appending stdout and stderr to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n")
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawn(argv[0], list(argv), dict(env), file_actions=actions, setsid=True)
    except OSError as e:
        raise DevnetError(f"cannot start {argv[0]}: {e}") from e
    return ProcessRecord(pid, _new_cmdline(pid, argv[0], log_path))


def _new_cmdline(pid: int, program: str, log_path: Path) -> tuple[str, ...]:
    """The command line of a just-spawned child, once the kernel has finished setting it up.

    posix_spawn returns as soon as exec has replaced the child's memory, slightly before the
    kernel publishes the new argv, so /proc/<pid>/cmdline can be empty for a moment.
    """
    deadline = time.monotonic() + CMDLINE_TIMEOUT_S
    while (cmdline := read_cmdline(pid)) is None:
        exited, _ = os.waitpid(pid, os.WNOHANG)
        if exited or time.monotonic() > deadline:
            raise DevnetError(f"{program} exited at once; see {log_path}")
        time.sleep(0.01)
    return cmdline


def wait_gone(record: ProcessRecord, timeout: float) -> bool:
    """Wait up to `timeout` seconds for the process to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while not has_exited(record):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def stop(record: ProcessRecord, timeout: float, hard: bool = False) -> str:
    """Stop the recorded process (SIGTERM, then SIGKILL after `timeout`; `hard`: SIGKILL at once).

    Returns what happened, for the user. A PID that now runs another command is left alone.
    """
    current = read_cmdline(record.pid)
    if current is None:
        reap(record.pid)
        return "was not running"
    if current != record.cmdline:
        return f"PID {record.pid} now runs another program ({' '.join(current)[:60]}); left alone"
    if not hard:
        _signal(record.pid, signal.SIGTERM)
        if wait_gone(record, timeout):
            return "stopped"
    _signal(record.pid, signal.SIGKILL)
    if not wait_gone(record, timeout):
        raise DevnetError(f"PID {record.pid} survived SIGKILL for {timeout:.0f}s")
    return "killed"


def _signal(pid: int, sig: signal.Signals) -> None:
    """Send a signal, ignoring a process that exited meanwhile."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
