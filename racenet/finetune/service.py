"""A node's fine-tuning service: training files, jobs opened on chain, the provider's LoRA worker, adapters.

As a gateway (the node a developer calls) it keeps uploaded training files, opens a job on chain
(`finetune/CreateJob`: escrow, provider drawn by the chain) and forwards the file to the drawn provider, signed.
As a provider it checks the forward against the committed job (its provider, gateway, file hash and token count),
trains in a background thread, saves the adapter (one safetensors file named by its SHA-256) and reports it on
chain (`finetune/CompleteJob`), or gives the job up (`finetune/CancelJob`, refunded) if training fails. A job the
chain closed (cancelled, expired) stops at the next step. Job state is one JSON file per job, replaced atomically,
so a crash never leaves a half-written record; after a restart unfinished jobs train again from the start.
Any node serving a fine-tuned model fetches the adapter from the provider by hash and checks the hash (`adapter`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from racenet.chain.errors import ChainError
from racenet.chain.modules import finetune, inference
from racenet.chain.modules.finetune import JobInfo, JobStatus, MsgCancelJob, MsgCompleteJob, MsgCreateJob
from racenet.crypto.address import address_from_pubkey, encode_address
from racenet.crypto.keys import PublicKey
from racenet.finetune import lora
from racenet.finetune.data import DataError, parse_jsonl
from racenet.node.client import ChainClient, ClientError, TxRejected
from racenet.node.openai_format import ApiError
from racenet.node.sender import TxSender
from racenet.node.transfer_agent import api_key_id_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from racenet.ml.transformers_backend import TransformersBackend

log = logging.getLogger(__name__)

RUN_DOMAIN = b"racenet/finetune-run/v1\x00"
MAX_EXAMPLE_TOKENS = 1_024
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
ROUTE_TIMEOUT = 30.0
CLOSED = {JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value}


@dataclass(frozen=True)
class Developer:
    """Who calls: the paying account and its API key id."""

    address: bytes
    api_key_id: bytes


def _write_json(path: Path, doc: Any) -> None:
    """Replace a JSON file atomically (write, fsync, rename)."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)


def run_headers(sender: TxSender, job_id: bytes, body: bytes) -> dict[str, str]:
    """A gateway's signature over a forward of a job's training file to its provider."""
    signed = RUN_DOMAIN + job_id + hashlib.sha256(body).digest()
    return {
        "x-racenet-public-key": sender.key.public_key.raw.hex(),
        "x-racenet-signature": sender.key.sign(signed).hex(),
    }


class FineTuneService:
    """Files, jobs, the training worker and adapters of one node (see the module docstring)."""

    def __init__(
        self,
        base: TransformersBackend,
        client: ChainClient,
        sender: TxSender,
        state_dir: Path,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base = base
        self.client = client
        self.sender = sender
        self.address = sender.key.public_key.address
        self.dirs = {name: state_dir / name for name in ("files", "jobs", "work", "adapters")}
        for folder in self.dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
        self.http = httpx.Client(timeout=TIMEOUT, transport=transport)
        self.queue: queue.Queue[str] = queue.Queue()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        for path in sorted(self.dirs["work"].glob("*/job.json")):
            if json.loads(path.read_text())["status"] not in CLOSED:
                self.queue.put(path.parent.name)  # interrupted: train again from the start
        self.worker = threading.Thread(target=self._work, name="finetune-worker", daemon=True)
        self.worker.start()

    # -- who calls -----------------------------------------------------------------------------------------------

    def developer(self, headers: Mapping[str, str]) -> Developer:
        """The developer behind a bearer API key that names this node as gateway; ApiError 401 otherwise."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise ApiError(401, "send an API key (Authorization: Bearer rk-…)", "authentication_error")
        key_id = api_key_id_of(token.strip())
        key = self.client.query(inference.APIKEY, key_id)
        if key is None or key.revoked or self.address not in key.gateways:
            raise ApiError(401, "unknown or revoked API key, or not for this gateway", "authentication_error")
        return Developer(key.developer, key_id)

    # -- files ---------------------------------------------------------------------------------------------------

    def upload(self, who: Developer, raw: bytes, filename: str, purpose: str) -> dict[str, Any]:
        """Validate and keep a training file; the OpenAI file object."""
        if purpose != "fine-tune":
            raise ApiError(400, f"purpose must be 'fine-tune', not {purpose!r}", param="purpose")
        tokens = self._count(raw)
        file_id = "file-" + hashlib.sha256(who.address + raw).hexdigest()[:24]
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(raw),
            "created_at": int(time.time()),
            "filename": filename[:256] or "training.jsonl",
            "purpose": purpose,
            "status": "processed",
            "owner": who.address.hex(),
            "tokens": tokens,
        }
        (self.dirs["files"] / f"{file_id}.jsonl").write_bytes(raw)
        _write_json(self.dirs["files"] / f"{file_id}.json", meta)
        return _public(meta)

    def _count(self, raw: bytes) -> int:
        """Tokens of one epoch of a training file; ApiError 400 naming the problem if it does not parse."""
        try:
            examples = parse_jsonl(raw)
            encoded = [lora.encode(self.base.tokenizer, e, MAX_EXAMPLE_TOKENS) for e in examples]
        except DataError as e:
            raise ApiError(400, f"invalid training file: {e}", param="file", code="invalid_file") from None
        return lora.training_tokens(encoded)

    def file(self, who: Developer, file_id: str) -> dict[str, Any]:
        """A file's metadata (its owner only); ApiError 404 if unknown."""
        return _public(self._file_meta(who, file_id))

    def _file_meta(self, who: Developer, file_id: str) -> dict[str, Any]:
        path = self.dirs["files"] / f"{file_id}.json"
        if not file_id.startswith("file-") or "/" in file_id or not path.is_file():
            raise ApiError(404, f"no such file: {file_id}", param="file_id", code="file_not_found")
        meta: dict[str, Any] = json.loads(path.read_text())
        if meta["owner"] != who.address.hex():
            raise ApiError(404, f"no such file: {file_id}", param="file_id", code="file_not_found")
        return meta

    # -- jobs (gateway) ------------------------------------------------------------------------------------------

    def create_job(self, who: Developer, body: Mapping[str, Any]) -> dict[str, Any]:
        """Open a job on chain for an uploaded file and forward the file to the provider the chain drew."""
        model, file_id, suffix = body.get("model"), body.get("training_file"), body.get("suffix") or ""
        if not isinstance(model, str) or model not in self.base.models():
            raise ApiError(404, f"the model {model!r} cannot be fine-tuned here", param="model", code="model_not_found")
        if not isinstance(file_id, str) or not isinstance(suffix, str):
            raise ApiError(400, "training_file and suffix must be strings", param="training_file")
        hp = _hyperparameters(body.get("hyperparameters") or {})
        meta = self._file_meta(who, file_id)
        raw = (self.dirs["files"] / f"{file_id}.jsonl").read_bytes()
        create = MsgCreateJob(
            developer=who.address,
            api_key_id=who.api_key_id,
            model=model,
            training_hash=hashlib.sha256(raw).digest(),
            training_tokens=meta["tokens"],
            n_epochs=hp.n_epochs,
            suffix=suffix,
        )
        try:
            create.validate()
            job_id = self.sender.send([create]).data
        except TxRejected as e:
            status = 402 if e.name == "insufficient_funds" else 400
            raise ApiError(status, f"the job was refused: {e.log}", code=e.name) from e
        except (ChainError, ClientError) as e:
            raise ApiError(400, f"the job was refused: {e}", code="job_refused") from e
        record = {"file": file_id, "hyperparameters": lora.hyperparameters_json(hp), "created_at": int(time.time())}
        _write_json(self.dirs["jobs"] / f"{job_id.hex()}.json", record)
        self._forward(job_id, raw, record)
        return self.job(who, "ftjob-" + job_id.hex())

    def _forward(self, job_id: bytes, raw: bytes, record: dict[str, Any]) -> None:
        """Send the training file to the job's provider once the chain drew it (it fails the job if unreachable)."""
        deadline = time.monotonic() + ROUTE_TIMEOUT
        info = self._chain_job(job_id)
        while not info.job.provider and time.monotonic() < deadline:
            time.sleep(0.2)
            info = self._chain_job(job_id)
        endpoints = {s.address: s.endpoint for s in self.client.query(inference.SERVERS, info.job.model).servers}
        body = json.dumps(
            {
                "job_id": job_id.hex(),
                "hyperparameters": record["hyperparameters"],
                "file": base64.b64encode(raw).decode(),
            }
        ).encode()
        url = endpoints.get(info.job.provider, "").rstrip("/") + "/racenet/v1/fine_tuning/run"
        try:
            response = self.http.post(url, content=body, headers=run_headers(self.sender, job_id, body))
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}: {response.text[:200]}")
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:
            log.warning("could not forward job %s to its provider: %s", job_id.hex(), e)

    def _chain_job(self, job_id: bytes) -> JobInfo:
        info = self.client.query(finetune.JOB, job_id)
        if info is None:
            raise ApiError(404, f"no such job: ftjob-{job_id.hex()}", param="fine_tuning_job_id", code="job_not_found")
        return info

    def _owned(self, who: Developer, job: str) -> tuple[bytes, JobInfo]:
        try:
            job_id = bytes.fromhex(job.removeprefix("ftjob-"))
        except ValueError:
            job_id = b""
        if len(job_id) != 32 or not job.startswith("ftjob-"):
            raise ApiError(404, f"no such job: {job}", param="fine_tuning_job_id", code="job_not_found")
        info = self._chain_job(job_id)
        if info.job.developer != who.address:
            raise ApiError(404, f"no such job: {job}", param="fine_tuning_job_id", code="job_not_found")
        return job_id, info

    def job(self, who: Developer, job: str) -> dict[str, Any]:
        """The OpenAI job object: the chain's record, this gateway's request record and the provider's progress."""
        job_id, info = self._owned(who, job)
        return self._job_json(job_id, info, self._progress(info)["job"])

    def jobs(self, who: Developer) -> list[dict[str, Any]]:
        """The developer's jobs opened through this gateway, newest first."""
        out = []
        for path in sorted(self.dirs["jobs"].glob("*.json"), key=lambda p: -p.stat().st_mtime):
            info = self.client.query(finetune.JOB, bytes.fromhex(path.stem))
            if info is not None and info.job.developer == who.address:
                out.append(self._job_json(info.id, info, {}))
        return out

    def events(self, who: Developer, job: str) -> list[dict[str, Any]]:
        """The job's events, newest first (OpenAI's order)."""
        _, info = self._owned(who, job)
        events: list[dict[str, Any]] = self._progress(info)["events"]
        return events[::-1]

    def cancel(self, who: Developer, job: str) -> dict[str, Any]:
        """Cancel on chain (the escrow is refunded); the provider stops at its next step."""
        job_id, info = self._owned(who, job)
        if info.job.status in CLOSED:
            raise ApiError(400, f"the job is already {info.job.status}", code="job_closed")
        try:
            self.sender.send([MsgCancelJob(job_id)])
        except (TxRejected, ClientError) as e:
            raise ApiError(400, f"the cancel was refused: {e}", code="cancel_refused") from e
        return self.job(who, job)

    def _progress(self, info: JobInfo) -> dict[str, Any]:
        """The provider's events and progress for a job; empty if it cannot be reached."""
        if info.job.provider == self.address:
            return self.progress(info.id.hex())
        endpoints = {s.address: s.endpoint for s in self.client.query(inference.SERVERS, info.job.model).servers}
        url = endpoints.get(info.job.provider, "").rstrip("/") + f"/racenet/v1/fine_tuning/progress/{info.id.hex()}"
        try:
            doc: dict[str, Any] = self.http.get(url).raise_for_status().json()
            return doc
        except (httpx.HTTPError, httpx.InvalidURL, ValueError):
            return {"job": {}, "events": []}

    def _job_json(self, job_id: bytes, info: JobInfo, progress: Mapping[str, Any]) -> dict[str, Any]:
        chain_job = info.job
        record_path = self.dirs["jobs"] / f"{job_id.hex()}.json"
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        hp = record.get("hyperparameters") or progress.get("hyperparameters") or {}
        succeeded = chain_job.status == JobStatus.SUCCEEDED
        error = progress.get("error") if chain_job.status == JobStatus.FAILED else None
        return {
            "id": "ftjob-" + job_id.hex(),
            "object": "fine_tuning.job",
            "created_at": record.get("created_at", 0),
            "finished_at": progress.get("finished_at") if chain_job.status in CLOSED else None,
            "model": chain_job.model,
            "fine_tuned_model": finetune.fine_tuned_model(chain_job, job_id) if succeeded else None,
            "organization_id": encode_address(chain_job.developer),
            "result_files": [],
            "status": str(chain_job.status),
            "training_file": record.get("file", ""),
            "validation_file": None,
            "hyperparameters": {k: hp[k] for k in ("n_epochs", "batch_size", "learning_rate_multiplier") if k in hp},
            "trained_tokens": chain_job.trained_tokens if succeeded else progress.get("trained_tokens"),
            "seed": hp.get("seed", 0),
            "error": {"code": "training_failed", "message": error, "param": None} if error else None,
            "estimated_finish": None,
            "racenet": {
                "provider": encode_address(chain_job.provider) if chain_job.provider else None,
                "escrow_nicoin": int(chain_job.escrow),
                "cost_nicoin": int(chain_job.cost),
                "adapter_sha256": chain_job.adapter_hash.hex() or None,
                "step": progress.get("step"),
                "total_steps": progress.get("total_steps"),
            },
        }

    # -- the provider ------------------------------------------------------------------------------------------

    def accept(self, raw: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """A gateway's forward of a job this node was drawn for: check it against the chain, then queue it."""
        try:
            doc = json.loads(raw)
            job_id, file = bytes.fromhex(doc["job_id"]), base64.b64decode(doc["file"], validate=True)
            hp = _hyperparameters(doc["hyperparameters"])
            pub = bytes.fromhex(headers.get("x-racenet-public-key", ""))
            signature = bytes.fromhex(headers.get("x-racenet-signature", ""))
        except (ValueError, KeyError, TypeError) as e:
            raise ApiError(400, f"malformed job forward: {e}") from None
        signed = RUN_DOMAIN + job_id + hashlib.sha256(raw).digest()
        if len(pub) != 32 or not PublicKey(pub).verify(signed, signature):
            raise ApiError(401, "the forward is not signed", "authentication_error")
        info = self._chain_job(job_id)
        job = info.job
        if job.provider != self.address or job.transfer_agent != address_from_pubkey(pub):
            raise ApiError(403, "no committed job routes this forward to this provider", "permission_error")
        if hashlib.sha256(file).digest() != job.training_hash or hp.n_epochs != job.n_epochs:
            raise ApiError(409, "the forwarded file or epochs are not the job's", code="body_mismatch")
        if self._count(file) != job.training_tokens:
            raise ApiError(409, "the file's token count differs from the job's", code="tokens_mismatch")
        work = self.dirs["work"] / job_id.hex()
        with self.lock:
            if (work / "job.json").is_file():
                raise ApiError(409, "this job was already accepted", code="already_accepted")
            work.mkdir()
            (work / "training.jsonl").write_bytes(file)
            _write_json(work / "events.json", [])
            state = {"status": "queued", "hyperparameters": lora.hyperparameters_json(hp), "step": 0}
            _write_json(work / "job.json", state)
        self._event(job_id.hex(), "Fine-tuning job accepted by its provider")
        self.queue.put(job_id.hex())
        return {"status": "queued"}

    def progress(self, job_hex: str) -> dict[str, Any]:
        """This provider's state and events of a job (public: they reveal no training data)."""
        work = self.dirs["work"] / job_hex
        if len(job_hex) != 64 or not (work / "job.json").is_file():
            return {"job": {}, "events": []}
        with self.lock:
            return {"job": json.loads((work / "job.json").read_text()), "events": self._events(job_hex)}

    def _events(self, job_hex: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = json.loads((self.dirs["work"] / job_hex / "events.json").read_text())
        return events

    def _event(self, job_hex: str, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        with self.lock:
            events = self._events(job_hex)
            event = {
                "id": f"ftevent-{job_hex[:16]}-{len(events)}",
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "type": "metrics" if data else "message",
                "data": data,
            }
            _write_json(self.dirs["work"] / job_hex / "events.json", [*events, event])

    def _update(self, job_hex: str, **fields: Any) -> None:
        with self.lock:
            path = self.dirs["work"] / job_hex / "job.json"
            _write_json(path, {**json.loads(path.read_text()), **fields})

    def close(self) -> None:
        """Stop the training thread at its next step; an interrupted job trains again when the node restarts."""
        self.stopping.set()
        self.worker.join()

    def _work(self) -> None:
        """The training thread: one job at a time, in the order accepted, until `close`."""
        while not self.stopping.is_set():
            try:
                job_hex = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._train(job_hex)
            except Exception as e:  # a failed job is given up on chain (refunded), the node goes on
                log.exception("fine-tuning job %s failed", job_hex)
                self._update(job_hex, status="failed", error=str(e), finished_at=int(time.time()))
                self._event(job_hex, f"Training failed: {e}", level="error")
                self._send(MsgCancelJob(bytes.fromhex(job_hex)))

    def _train(self, job_hex: str) -> None:
        work = self.dirs["work"] / job_hex
        state = json.loads((work / "job.json").read_text())
        hp = lora.Hyperparameters(**state["hyperparameters"])
        examples = parse_jsonl((work / "training.jsonl").read_bytes())
        encoded = [lora.encode(self.base.tokenizer, e, MAX_EXAMPLE_TOKENS) for e in examples]
        if not self._still_open(job_hex):
            self._update(job_hex, status="cancelled", finished_at=int(time.time()))
            self._event(job_hex, "Not trained: the job was closed on chain before it started")
            return
        self._update(job_hex, status="running", step=0)
        self._event(job_hex, f"Training started: {len(encoded)} examples, {hp.n_epochs} epochs")
        losses: list[float] = []

        def on_step(step: int, total: int, loss: float) -> bool:
            losses.append(loss)
            self._update(job_hex, step=step, total_steps=total, losses=losses)
            self._event(job_hex, f"Step {step}/{total}: training loss={loss:.4f}", {"step": step, "train_loss": loss})
            return not self.stopping.is_set() and self._still_open(job_hex)

        trained = lora.train(self.base.model, self.base.tokenizer, encoded, hp, on_step)
        if self.stopping.is_set():
            return  # the node is shutting down: the job stays open and trains again at the next start
        if trained is None:
            self._update(job_hex, status="cancelled", finished_at=int(time.time()))
            self._event(job_hex, "Training stopped: the job was closed on chain")
            return
        partial = self.dirs["adapters"] / f"{job_hex}.safetensors"
        digest = lora.save_adapter(trained, partial, hp)
        partial.replace(self.dirs["adapters"] / f"{digest}.safetensors")
        tokens = lora.training_tokens(encoded) * hp.n_epochs
        self._send(MsgCompleteJob(bytes.fromhex(job_hex), bytes.fromhex(digest), tokens))
        self._update(job_hex, status="succeeded", adapter=digest, trained_tokens=tokens, finished_at=int(time.time()))
        self._event(job_hex, f"Adapter saved (sha256 {digest}); the job succeeded")

    def _still_open(self, job_hex: str) -> bool:
        try:
            info = self.client.query(finetune.JOB, bytes.fromhex(job_hex))
        except ClientError:
            return True  # the chain is briefly unreachable: keep training, the Complete decides
        return info is not None and info.job.status not in CLOSED

    def _send(self, msg: MsgCompleteJob | MsgCancelJob) -> None:
        try:
            self.sender.send([msg])
        except ClientError as e:
            log.warning("could not send %s: %s", msg.TYPE, e)

    # -- adapters ------------------------------------------------------------------------------------------------

    def adapter_file(self, digest: str) -> Path:
        """The local adapter file with this SHA-256 (hex); ApiError 404 if this node has none."""
        path = self.dirs["adapters"] / f"{digest}.safetensors"
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) or not path.is_file():
            raise ApiError(404, "no adapter with that hash here", code="not_found")
        return path

    def adapter(self, job_id: bytes) -> tuple[str, Path]:
        """(base model, adapter file) of a succeeded job, fetching the file from its provider by hash if needed and
        checking the hash the chain recorded; ApiError 404 if the job has no adapter."""
        info = self.client.query(finetune.JOB, job_id)
        if info is None or info.job.status != JobStatus.SUCCEEDED:
            raise ApiError(404, "no succeeded fine-tuning job serves that model", code="model_not_found", param="model")
        digest = info.job.adapter_hash.hex()
        path = self.dirs["adapters"] / f"{digest}.safetensors"
        if path.is_file():
            return info.job.model, path
        endpoints = {s.address: s.endpoint for s in self.client.query(inference.SERVERS, info.job.model).servers}
        url = endpoints.get(info.job.provider, "").rstrip("/") + f"/racenet/v1/adapters/{digest}"
        try:
            data = self.http.get(url).raise_for_status().content
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise ApiError(503, f"the adapter could not be fetched from its provider: {e}", "server_error") from e
        if hashlib.sha256(data).hexdigest() != digest:
            raise ApiError(502, "the provider's adapter does not match the hash on chain", "server_error")
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
        return info.job.model, path

    def merge(self, model: str, base: PreTrainedModel) -> PreTrainedModel:
        """`base` with the adapter of the fine-tuned model `model` merged in (`TransformersBackend.use_adapters`)."""
        parsed = finetune.parse_fine_tuned(model)
        if parsed is None:
            raise ApiError(404, f"the model {model!r} does not exist", code="model_not_found", param="model")
        base_name, path = self.adapter(parsed[1])
        if base_name != parsed[0]:
            raise ApiError(404, f"the model {model!r} does not exist", code="model_not_found", param="model")
        return lora.merged_model(base, path)

    def check_servable(self, model: str) -> str:
        """The base model of a fine-tuned model whose job succeeded on chain; ApiError 404 otherwise."""
        parsed = finetune.parse_fine_tuned(model)
        info = None if parsed is None else self.client.query(finetune.JOB, parsed[1])
        if parsed is None or info is None or info.job.status != JobStatus.SUCCEEDED or info.job.model != parsed[0]:
            raise ApiError(404, f"the model {model!r} does not exist", code="model_not_found", param="model")
        return parsed[0]


def _public(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A file's metadata without the service's private fields."""
    return {k: v for k, v in meta.items() if k not in ("owner", "tokens")}


def _hyperparameters(doc: Any) -> lora.Hyperparameters:
    """OpenAI hyperparameters (`"auto"` or a value) over racenet's defaults; ApiError 400 if out of range."""
    if not isinstance(doc, dict):
        raise ApiError(400, "hyperparameters must be an object", param="hyperparameters")
    hp = lora.Hyperparameters()
    values = {k: v for k, v in doc.items() if v != "auto" and v is not None}
    try:
        hp = replace(hp, **{k: v for k, v in values.items() if k in ("n_epochs", "batch_size", "seed")})
        if "learning_rate_multiplier" in values:
            hp = replace(hp, learning_rate_multiplier=float(values["learning_rate_multiplier"]))
        if set(values) - {"n_epochs", "batch_size", "learning_rate_multiplier", "seed", "rank", "alpha"}:
            raise ValueError("unknown hyperparameter")
        hp = replace(hp, **{k: v for k, v in values.items() if k in ("rank", "alpha")})
    except (TypeError, ValueError) as e:
        raise ApiError(400, f"bad hyperparameters: {e}", param="hyperparameters") from None
    ints = (hp.n_epochs, hp.batch_size, hp.rank, hp.alpha, hp.seed)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in ints):
        raise ApiError(
            400, "hyperparameters: n_epochs, batch_size, rank, alpha and seed are integers", param="hyperparameters"
        )
    if not (1 <= hp.n_epochs <= 50 and 1 <= hp.batch_size <= 64 and 1 <= hp.rank <= 64 and 1 <= hp.alpha <= 256):
        raise ApiError(
            400, "hyperparameters: n_epochs 1-50, batch_size 1-64, rank 1-64, alpha 1-256", param="hyperparameters"
        )
    if not 0.01 <= hp.learning_rate_multiplier <= 10 or hp.seed < 0:
        raise ApiError(400, "hyperparameters: learning_rate_multiplier 0.01-10 and seed >= 0", param="hyperparameters")
    return hp
