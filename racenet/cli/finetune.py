"""`racenet fine-tune`: a developer's fine-tuning jobs through a node's OpenAI-compatible API (docs/fine-tuning.md).

`create` uploads a chat JSONL file, creates the job and (unless `--no-wait`) follows it with a progress bar until it
ends, then saves the loss curve: a PNG if matplotlib is installed, else a CSV. `status`, `list`, `events` and
`cancel` call the matching endpoints. The API key is the one `racenet api-key create` printed (`$RACENET_API_KEY`).
"""

from __future__ import annotations

import csv
import importlib.util
import time
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from racenet.cli.common import api_call, api_option, echo_json, json_option, key_option

POLL_SECONDS = 2.0


def _summary(job: dict[str, Any]) -> str:
    extra = job.get("racenet") or {}
    parts = [f"{job['id']}  {job['status']}", f"model {job['fine_tuned_model'] or job['model']}"]
    if extra.get("step"):
        parts.append(f"step {extra['step']}/{extra['total_steps']}")
    parts.append(f"escrow {extra.get('escrow_nicoin')} nicoin, cost {extra.get('cost_nicoin')}")
    if extra.get("adapter_sha256"):
        parts.append(f"adapter sha256 {extra['adapter_sha256']}")
    return "  ".join(parts)


@click.group("fine-tune")
def fine_tune() -> None:
    """Fine-tune a model (LoRA) on your chat examples, paid per training token."""


@fine_tune.command()
@api_option
@key_option
@json_option
@click.argument("training_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", default="SmolLM2-135M-Instruct", show_default=True, help="The base model.")
@click.option("--epochs", type=int, help="n_epochs (default: the node's, 4).")
@click.option("--batch-size", type=int, help="batch_size (default 4).")
@click.option("--lr-multiplier", type=float, help="learning_rate_multiplier (default 1.0).")
@click.option("--suffix", default="", help="Up to 40 characters in the fine-tuned model's name.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the job until it ends.")
@click.option("--loss-curve", type=click.Path(dir_okay=False, path_type=Path), help="Where to save the loss curve.")
def create(
    api: str,
    api_key: str,
    as_json: bool,
    training_file: Path,
    model: str,
    epochs: int | None,
    batch_size: int | None,
    lr_multiplier: float | None,
    suffix: str,
    wait: bool,
    loss_curve: Path | None,
) -> None:
    """Upload TRAINING_FILE (chat JSONL: one {"messages": [...]} per line) and fine-tune MODEL on it."""
    files = {"file": (training_file.name, training_file.read_bytes(), "application/jsonl")}
    uploaded = api_call(api, api_key, "POST", "/files", files=files, data={"purpose": "fine-tune"})
    hp = {"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": lr_multiplier}
    body = {"model": model, "training_file": uploaded["id"], "suffix": suffix or None}
    body["hyperparameters"] = {k: v for k, v in hp.items() if v is not None}
    job = api_call(api, api_key, "POST", "/fine_tuning/jobs", json=body)
    if not as_json:
        click.echo(f"uploaded {uploaded['id']}; {_summary(job)}")
    if wait:
        job = _follow(api, api_key, job["id"], quiet=as_json)
        losses = [e["data"]["train_loss"] for e in _events(api, api_key, job["id"]) if e.get("type") == "metrics"]
        if losses:
            path = save_loss_curve(losses, loss_curve or Path(f"{job['id']}-loss"))
            if not as_json:
                click.echo(f"loss {losses[0]:.4f} → {losses[-1]:.4f}; curve saved to {path}")
    if as_json:
        echo_json(job)
    elif wait:
        click.echo(_summary(job))


def _follow(api: str, api_key: str, job_id: str, quiet: bool) -> dict[str, Any]:
    """Poll a job with a progress bar (steps) until it succeeds, fails or is cancelled."""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), disable=quiet) as progress:
        task = progress.add_task("training", total=None)
        while True:
            job: dict[str, Any] = api_call(api, api_key, "GET", f"/fine_tuning/jobs/{job_id}")
            extra = job.get("racenet") or {}
            progress.update(task, total=extra.get("total_steps"), completed=extra.get("step") or 0)
            progress.update(task, description=job["status"])
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(POLL_SECONDS)


def _events(api: str, api_key: str, job_id: str) -> list[dict[str, Any]]:
    """A job's events, oldest first."""
    events: list[dict[str, Any]] = api_call(api, api_key, "GET", f"/fine_tuning/jobs/{job_id}/events")["data"]
    return events[::-1]


def save_loss_curve(losses: list[float], stem: Path) -> Path:
    """The loss per step as `<stem>.png` if matplotlib is installed, else as `<stem>.csv`; the path written."""
    if importlib.util.find_spec("matplotlib") is None:
        path = stem.with_suffix(".csv")
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "train_loss"])
            writer.writerows((i, loss) for i, loss in enumerate(losses, 1))
        return path
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    path = stem.with_suffix(".png")
    figure, axes = pyplot.subplots(figsize=(6, 3.5))
    axes.plot(range(1, len(losses) + 1), losses, marker="o")
    axes.set(xlabel="step", ylabel="training loss", title="fine-tuning loss")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return path


@fine_tune.command()
@api_option
@key_option
@json_option
@click.argument("job_id")
def status(api: str, api_key: str, as_json: bool, job_id: str) -> None:
    """Show a job (ftjob-…)."""
    job = api_call(api, api_key, "GET", f"/fine_tuning/jobs/{job_id}")
    echo_json(job) if as_json else click.echo(_summary(job))


@fine_tune.command("list")
@api_option
@key_option
@json_option
def list_jobs(api: str, api_key: str, as_json: bool) -> None:
    """List your jobs opened through this node."""
    jobs = api_call(api, api_key, "GET", "/fine_tuning/jobs")["data"]
    if as_json:
        echo_json(jobs)
    for job in [] if as_json else jobs:
        click.echo(_summary(job))


@fine_tune.command()
@api_option
@key_option
@json_option
@click.argument("job_id")
def events(api: str, api_key: str, as_json: bool, job_id: str) -> None:
    """Show a job's events, oldest first."""
    found = _events(api, api_key, job_id)
    if as_json:
        echo_json(found)
    for event in [] if as_json else found:
        click.echo(f"{time.strftime('%H:%M:%S', time.gmtime(event['created_at']))}  {event['message']}")


@fine_tune.command()
@api_option
@key_option
@json_option
@click.argument("job_id")
def cancel(api: str, api_key: str, as_json: bool, job_id: str) -> None:
    """Cancel a job: its escrow comes back."""
    job = api_call(api, api_key, "POST", f"/fine_tuning/jobs/{job_id}/cancel")
    echo_json(job) if as_json else click.echo(_summary(job))
