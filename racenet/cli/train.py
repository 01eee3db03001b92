"""`racenet train submit | join | status | logs`: DiLoCo training jobs coordinated on chain (docs/training.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Column, Table

from racenet.chain.codec import encode
from racenet.chain.errors import ChainError
from racenet.chain.jsonform import to_json
from racenet.chain.module import Msg
from racenet.chain.modules import gov, training
from racenet.chain.modules.bank.denom import format_amount, parse_amount
from racenet.chain.modules.training import MsgCreateGrantJob, MsgCreateJob, MsgJoin
from racenet.chain.tx import AnyMsg
from racenet.cli.common import (
    TABLE_WIDTH,
    address_text,
    chain_client,
    echo_json,
    fail,
    home_option,
    json_option,
    load_key,
    node_option,
    table_console,
    wide_option,
)
from racenet.node.client import TxOutcome
from racenet.node.sender import TxSender
from racenet.node.trainer import ARCHITECTURE_PREFIX, PPM, Progress, initial_weights_hash, read_progress
from racenet.train.data import Corpus, DataUnavailableError
from racenet.train.model import PRESETS


@click.group("train")
def train_group() -> None:
    """Training jobs: submit one, join one with a node, follow its rounds and proofs of learning, plot its loss."""


def _ppm(value: float, name: str) -> int:
    ppm = round(value * PPM)
    if not math.isfinite(value) or ppm < 0:
        fail(f"{name} must be a finite, non-negative number")
    return ppm


def _send(node: str, home: Path, key_name: str, msg: Msg) -> TxOutcome:
    try:
        msg.validate()
    except ChainError as e:
        fail(e.message)
    key = load_key(home, key_name)
    with chain_client(node) as client:
        return TxSender(client, key).send([msg])


@train_group.command()
@home_option
@node_option
@json_option
@click.option("--from", "key_name", required=True, help="Keyring key that pays the budget.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="tiny", show_default=True, help="GPT size.")
@click.option(
    "--data",
    default="bible-kjv",
    show_default=True,
    help="bible-kjv or fortunes (Debian packages), or a text file every participant has at the same path.",
)
@click.option("--rounds", type=click.IntRange(1), default=4, show_default=True, help="Outer rounds.")
@click.option("--inner-steps", type=click.IntRange(1), default=20, show_default=True, help="H: AdamW steps a round.")
@click.option(
    "--segment-steps", type=click.IntRange(1), default=4, show_default=True, help="k: proof-of-learning segment."
)
@click.option("--inner-lr", type=float, default=3e-3, show_default=True, help="AdamW learning rate.")
@click.option("--outer-lr", type=float, default=0.7, show_default=True, help="Outer Nesterov SGD learning rate.")
@click.option("--outer-momentum", type=float, default=0.5, show_default=True, help="Outer Nesterov momentum.")
@click.option("--max-participants", type=click.IntRange(1), default=8, show_default=True, help="Seats (= shards).")
@click.option(
    "--grant",
    is_flag=True,
    help="Propose the job to governance instead, paid from the training fund if the vote passes (the proposal's "
    "deposit, the minimum, comes from --from).",
)
@click.argument("budget")
def submit(
    home: Path,
    node: str,
    as_json: bool,
    key_name: str,
    preset: str,
    data: str,
    rounds: int,
    inner_steps: int,
    segment_steps: int,
    inner_lr: float,
    outer_lr: float,
    outer_momentum: float,
    max_participants: int,
    grant: bool,
    budget: str,
) -> None:
    """Create a job that trains a GPT preset on DATA, paying BUDGET (like 50icon) to its participants.

    The budget is escrowed at once; each closed round pays its share to the participants that reported it, once
    the job's proofs of learning are decided. Nodes take part with `racenet train join`."""
    try:
        nicoin = parse_amount(budget)
    except ValueError as e:
        fail(str(e))
    console = Console(stderr=True)
    with console.status(f"hashing the training text {data!r} and the initial weights"):
        try:
            corpus = Corpus.load(data)
        except (DataUnavailableError, OSError, UnicodeDecodeError) as e:
            fail(f"cannot read the training text {data!r}: {e}")
        weights = initial_weights_hash(preset)
    msg = MsgCreateJob(
        architecture=ARCHITECTURE_PREFIX + preset,
        weights_hash=weights,
        dataset_hash=bytes.fromhex(corpus.digest),
        dataset_location=data,
        inner_lr_ppm=_ppm(inner_lr, "--inner-lr"),
        inner_steps=inner_steps,
        segment_steps=segment_steps,
        outer_lr_ppm=_ppm(outer_lr, "--outer-lr"),
        outer_momentum_ppm=_ppm(outer_momentum, "--outer-momentum"),
        rounds=rounds,
        max_participants=max_participants,
        budget=nicoin,
    )
    if grant:
        _propose(node, home, key_name, as_json, msg)
        return
    outcome = _send(node, home, key_name, msg)
    job_id = int.from_bytes(outcome.data, "big")
    if as_json:
        echo_json({"job": job_id, "height": outcome.height, "hash": outcome.hash})
    else:
        click.echo(f"job {job_id} created in block {outcome.height}: {outcome.hash}")


def _propose(node: str, home: Path, key_name: str, as_json: bool, job: MsgCreateJob) -> None:
    """Submit a proposal that funds `job` from the training fund, with the minimum deposit."""
    with chain_client(node) as client:
        deposit = client.query(gov.PARAMS).min_deposit
    title = f"Training job: {job.architecture} on {job.dataset_location}"
    summary = f"{job.rounds} rounds of {job.inner_steps} inner steps for {format_amount(job.budget)} from the fund"
    grant = MsgCreateGrantJob(job)
    outcome = _send(
        node, home, key_name, gov.MsgSubmitProposal(title, summary, (AnyMsg(grant.TYPE, encode(grant)),), deposit)
    )
    proposal_id = int.from_bytes(outcome.data[:8], "big")
    if as_json:
        echo_json({"proposal_id": proposal_id, "height": outcome.height, "hash": outcome.hash})
    else:
        click.echo(f"proposed as proposal {proposal_id} in block {outcome.height}: vote with racenet gov vote")


@train_group.command()
@home_option
@node_option
@click.option("--from", "key_name", required=True, help="Keyring key of the node (a Race weight holder).")
@click.option(
    "--endpoint", required=True, help="host:port the node's daemon takes part at (`racenet node run --train-endpoint`)."
)
@click.argument("job_id", type=click.IntRange(1))
def join(home: Path, node: str, key_name: str, endpoint: str, job_id: int) -> None:
    """Join JOB_ID: the node takes part from the next round boundary; its daemon does the training."""
    outcome = _send(node, home, key_name, MsgJoin(job_id, endpoint))
    click.echo(f"joined job {job_id} in block {outcome.height}: {outcome.hash}")


@train_group.command()
@node_option
@json_option
@wide_option
@click.argument("job_id", type=click.IntRange(1), required=False)
def status(node: str, as_json: bool, wide: bool, job_id: int | None) -> None:
    """Every job, or one job's rounds, participants and proof-of-learning records."""
    with chain_client(node) as client:
        if job_id is None:
            jobs = client.query(training.JOBS).jobs
            if as_json:
                echo_json([to_json(j) for j in jobs])
                return
            table = Table("job", "model", Column("data", overflow="fold"), "round", "status", "budget left")
            for j in jobs:
                table.add_row(
                    str(j.id), j.architecture, j.dataset_location, f"{j.round}/{j.rounds}", j.status.value,
                    format_amount(int(j.budget_left)),
                )  # fmt: skip
            table_console(wide).print(table)
            return
        job = client.query(training.JOB, str(job_id))
        if job is None:
            fail(f"no training job {job_id}")
        participants = client.query(training.PARTICIPANTS, str(job_id))
        segments = client.query(training.SEGMENTS, str(job_id))
    if as_json:
        echo_json({"job": to_json(job), "participants": to_json(participants), "segments": to_json(segments)})
        return
    name = address_text(wide)
    console = table_console(wide)
    console.print(
        f"job {job.id}: {job.architecture} on {job.dataset_location}, round {job.round}/{job.rounds}, "
        f"{job.status.value}, H={job.inner_steps}, k={job.segment_steps}, budget left "
        f"{format_amount(int(job.budget_left))} of {format_amount(int(job.budget))}"
    )
    console.print(participants_table(participants, name))
    if segments.segments:
        console.print(audits_table(segments, name))


def participants_table(participants: training.Participants, name: Callable[[bytes], str]) -> Table:
    """A job's participants: standing, first round, last round reported and reward held."""
    table = Table("participant", "status", "from", "reported", "held")
    for p in participants.participants:
        table.add_row(
            name(p.address), p.status.value, str(p.from_round), str(p.reported_through), format_amount(p.held)
        )
    return table


def audits_table(segments: training.Segments, name: Callable[[bytes], str]) -> Table:
    """A job's proof-of-learning audits: whose segment of which round, its step, status and judges."""
    audits = Table("round", "participant", "step", "status", "validators")
    for s in segments.segments:
        validators = ", ".join(name(v) for v in s.segment.validators)
        audits.add_row(str(s.round), name(s.participant), str(s.segment.step), s.segment.status.value, validators)
    return audits


@train_group.command()
@json_option
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node daemon's state directory (`racenet node run --state`).",
)
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Also save the loss curve as a PNG.")
@click.argument("job_id", type=click.IntRange(1))
def logs(as_json: bool, state_dir: Path, png: Path | None, job_id: int) -> None:
    """This node's view of JOB_ID: the mean inner loss of each round it trained, and how it ended."""
    directory = state_dir / "training" / f"job{job_id}"
    rows = read_progress(directory)
    if not rows:
        fail(f"this node has trained no round of job {job_id} (no {directory / 'progress.jsonl'})")
    result_path = directory / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    if png is not None:
        loss_curve(rows, job_id, png)
    if as_json:
        echo_json({"rounds": [vars(r) for r in rows], "result": result})
        return
    table = Table("round", "train loss", "seconds")
    for r in rows:
        table.add_row(str(r.round), f"{r.train_loss:.4f}", f"{r.seconds:.0f}")
    Console(width=TABLE_WIDTH).print(table)
    if result is not None:
        click.echo(json.dumps(result))
    if png is not None:
        click.echo(f"loss curve saved to {png}")


def loss_curve(rows: list[Progress], job_id: int, png: Path) -> None:
    """Plot the mean inner loss per round to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot([r.round for r in rows], [r.train_loss for r in rows], marker="o")
    axes.set_xlabel("round")
    axes.set_ylabel("mean inner loss (nats/byte)")
    axes.set_title(f"training job {job_id}")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png)
    plt.close(figure)
