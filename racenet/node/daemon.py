"""The provider's daemon: the Race loop and, when asked, the API (transfer agent and executor), the
validator's spot checks (`racenet.node.checker`, given the node's beacon key), its dummy requests
(`racenet.node.dummy`) and its part in training jobs (`racenet.node.trainer`) in one process.

Sharing the process lets the miner yield the CPU the moment a user request runs (whitepaper §4:
"The Race must not interfere with normal user requests"), lets both sign with one sequence, and
puts all torch work on one compute thread (`racenet.node.compute`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import uvicorn

from racenet.chain.modules import inference
from racenet.chain.modules.inference import MsgServeModels
from racenet.crypto.keys import PrivateKey
from racenet.ml.backend import Backend
from racenet.node.checker import Checker
from racenet.node.client import ChainClient
from racenet.node.compute import ComputeThread
from racenet.node.executor import Executor
from racenet.node.race_worker import RaceWorker
from racenet.node.sender import TxSender
from racenet.node.trainer import TrainingAgent

if TYPE_CHECKING:
    from racenet.finetune.service import FineTuneService

log = logging.getLogger(__name__)

TRANSFORMERS = "transformers"
OPENAI_PREFIX = "openai:"


def check_backend_spec(spec: str) -> str:
    """A backend spec as given: `transformers`, or `openai:<base URL>` of an OpenAI-compatible server."""
    url = urlsplit(spec.removeprefix(OPENAI_PREFIX))
    if spec == TRANSFORMERS or (spec.startswith(OPENAI_PREFIX) and url.scheme in ("http", "https") and url.netloc):
        return spec
    raise ValueError(f"use {TRANSFORMERS!r} or 'openai:http://host:port/v1', got {spec!r}")


def make_backend(spec: str, compute: ComputeThread, api_key: str | None = None) -> Backend:
    """The inference backend a spec names: SmolLM2 in-process (loaded on the compute thread) or an HTTP server.

    `api_key` is the bearer token an `openai:` server asks for (vLLM's `--api-key`); `transformers` ignores it.
    A packaged model (SmolLM2) served over HTTP is tokenized with its own tokenizer, which counts prompt tokens as
    the network does and names the token ids a server may leave out (llama-cpp-python's, `racenet.ml.local_tokenizer`).
    """
    if check_backend_spec(spec) == TRANSFORMERS:
        from racenet.ml.transformers_backend import TransformersBackend

        return compute.run(TransformersBackend.packaged)
    from racenet.ml.local_tokenizer import packaged_tokenizer
    from racenet.ml.openai_http import OpenAIHTTPBackend

    return OpenAIHTTPBackend(spec.removeprefix(OPENAI_PREFIX), api_key=api_key, tokenizers=packaged_tokenizer)


class Daemon:
    """Runs a node's Race worker and, if an API address is given, its HTTP API (and its checker, given its
    beacon secret)."""

    def __init__(
        self,
        node_url: str,
        key: PrivateKey,
        state_dir: Path,
        compute_budget: float,
        api: tuple[str, int] | None,
        threads: int | None = None,
        backend: str = TRANSFORMERS,
        backend_api_key: str | None = None,
        beacon_secret: int | None = None,
        dummy_tasks: bool = False,
        train_endpoint: tuple[str, int] | None = None,
        api_url: str | None = None,
    ) -> None:
        self.client = ChainClient(node_url)
        self.sender = TxSender(self.client, key)
        self.state_dir = state_dir
        self.api = api
        self.compute = ComputeThread(threads)
        self.executor: Executor | None = None
        self.server: uvicorn.Server | None = None
        self.checker: Checker | None = None
        self.finetune: FineTuneService | None = None
        self.dummy_stop = threading.Event()
        if api is not None:
            model = make_backend(backend, self.compute, backend_api_key)
            self._start_api(api, model, api_url or f"http://{api[0]}:{api[1]}")
            if beacon_secret is not None:
                self._start_checker(model, beacon_secret)
                if dummy_tasks:
                    self._start_dummy_issuer(model, beacon_secret)
        busy = self.executor.busy if self.executor is not None else None
        self.trainer: TrainingAgent | None = None
        if train_endpoint is not None:
            host, port = train_endpoint
            self.trainer = TrainingAgent(
                self.client, self.sender, f"{host}:{port}", state_dir, self.compute, busy or (lambda: False)
            )
            threading.Thread(target=self.trainer.run, name="training", daemon=True).start()
        self.worker = RaceWorker(
            self.client, self.sender, self.compute, state_dir, compute_budget=compute_budget, should_yield=busy
        )

    def _start_api(self, api: tuple[str, int], backend: Backend, url: str) -> None:
        """Start the API server on `backend` and tell the chain this node serves its models at `url`."""
        from racenet.finetune.service import FineTuneService
        from racenet.ml.transformers_backend import TransformersBackend
        from racenet.node.api import create_app
        from racenet.node.transfer_agent import TransferAgent

        host, port = api
        executor = Executor(backend, self.client, self.sender, self.state_dir / "executor", self.compute)
        if isinstance(backend, TransformersBackend):  # fine-tuning needs the in-process model (docs/fine-tuning.md)
            self.finetune = FineTuneService(backend, self.client, self.sender, self.state_dir / "finetune")
            backend.use_adapters(self.finetune.merge)
        agent = TransferAgent(self.client, self.sender, backend)
        app = create_app(agent, executor, finetune=self.finetune, training_dir=self.state_dir / "training")
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        threading.Thread(target=server.run, name="api", daemon=True).start()
        self.executor, self.server = executor, server
        self._announce(backend.models(), url)

    def _start_checker(self, model: Backend, beacon_secret: int) -> None:
        """Check the answers this validator owes checks of, with the model it serves (an in-process one)."""
        from racenet.ml.transformers_backend import TransformersBackend

        if not isinstance(model, TransformersBackend):
            log.warning("spot checks need the in-process model: this node will not check answers")
            return
        self.checker = Checker(self.client, self.sender, model, beacon_secret, self.compute)
        threading.Thread(target=self.checker.run, name="checker", daemon=True).start()

    def _start_dummy_issuer(self, model: Backend, beacon_secret: int) -> None:
        """Send dummy requests when user traffic is low (whitepaper §6), paid by issuer accounts the validator's
        dummy secret derives, and claim their cost from the dummy pool once their cycle settled."""
        from racenet.node.dummy import DummyGenerator, DummyIssuer, TrafficProfile, dummy_secret
        from racenet.node.request_signing import prompt_token_count

        issuer = DummyIssuer(
            self.client,
            self.sender,
            DummyGenerator(TrafficProfile.shipped()),
            dummy_secret(beacon_secret),
            self.state_dir / "dummy.json",
            count_tokens=lambda body: prompt_token_count(model, body),
        )
        threading.Thread(target=issuer.run, args=(self.dummy_stop,), name="dummy", daemon=True).start()

    def _announce(self, models: list[str], endpoint: str) -> None:
        """Send inference/ServeModels unless the chain already lists this node at this endpoint."""
        me = self.sender.key.public_key.address
        for model in models:
            servers = self.client.query(inference.SERVERS, model).servers
            if not any(s.address == me and s.endpoint == endpoint for s in servers):
                self.sender.send([MsgServeModels(tuple(models), endpoint)])
                log.info("serving %s at %s", ", ".join(models), endpoint)
                return

    def run(self) -> None:
        """Race until stopped (the API runs on its own thread)."""
        self.worker.run()

    def stop(self) -> None:
        """Stop the Race loop and the API server."""
        self.worker.stop.set()
        self.dummy_stop.set()
        if self.checker is not None:
            self.checker.stop.set()
        if self.trainer is not None:
            self.trainer.shutdown()
        if self.server is not None:
            self.server.should_exit = True
        if self.finetune is not None:
            self.finetune.close()
