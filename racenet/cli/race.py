"""`racenet race`: the chain's Race status, and mining / calibrating a Race locally.

torch loads only in the commands that compute, so the rest of the CLI starts fast.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from racenet.chain.jsonform import to_json
from racenet.chain.modules import race as chain_race
from racenet.chain.modules.race import Phase
from racenet.cli.common import (
    address_text,
    chain_client,
    echo_json,
    fail,
    home_option,
    json_option,
    node_option,
    table_console,
    wide_option,
)
from racenet.crypto.address import encode_address
from racenet.crypto.keyring import Keyring, KeyringError
from racenet.pow.presets import DIFFICULTY, PRESETS

if TYPE_CHECKING:
    from racenet.pow.miner import MiningStats

DTYPES = ("fp32", "bf16")
preset_option = click.option("--preset", type=click.Choice(list(PRESETS)), default="tiny", show_default=True)
threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=2, show_default=True, help="PyTorch compute threads."
)


@click.group()
def race() -> None:
    """The compute Race (Proof-of-Work 2.0): status on chain; mine and calibrate locally."""


def _public_key(pubkey: str | None, key: str | None, home: Path) -> bytes:
    """The node's public key: --pubkey hex, or the public half of keyring key --key (no passphrase needed)."""
    if (pubkey is None) == (key is None):
        fail("give exactly one of --pubkey HEX or --key NAME")
    if pubkey is not None:
        try:
            return bytes.fromhex(pubkey)
        except ValueError:
            fail("--pubkey must be hex")
    try:
        return Keyring(home / "keyring").show(str(key)).public_key.raw
    except KeyringError as e:
        fail(str(e))


class _AppendOnly(list[int]):
    """The miner's result list that also appends each found nonce as a line to an open file, flushed at once."""

    def __init__(self, out: TextIO | None) -> None:
        super().__init__()
        self.out = out

    def append(self, nonce: int) -> None:
        super().append(nonce)
        if self.out is not None:
            self.out.write(f"{nonce}\n")
            self.out.flush()


def _progress_bar(enabled: bool) -> Progress:
    """A rich progress bar over the mining time, showing nonces tried, appropriate vectors and nonces/s."""
    return Progress(
        TextColumn("[bold]race[/]"),
        BarColumn(),
        TimeRemainingColumn(),
        TextColumn(
            "{task.fields[tried]:,} nonces  {task.fields[found]} appropriate  {task.fields[rate]:,.1f} nonces/s"
        ),
        disable=not enabled,
    )


def _show_progress(bar: Progress, task: TaskID, seconds: float, stats: MiningStats) -> None:
    """Move the progress bar to the miner's stats after a batch."""
    bar.update(
        task,
        completed=min(stats.seconds, seconds),
        tried=stats.tried,
        found=stats.found,
        rate=stats.nonces_per_second,
    )


@race.command()
@preset_option
@click.option("--seed", "seed_hex", required=True, help="Race seed, 32 bytes hex.")
@click.option("--pubkey", help="The node's ed25519 public key, hex.")
@click.option("--key", help="Keyring key whose public key mines.")
@home_option
@click.option("--seconds", type=click.FloatRange(min=0), default=60.0, show_default=True, help="Mining time.")
@click.option("--start-nonce", type=click.IntRange(min=0, max=2**64 - 1), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), help="Nonces per forward pass (default: the preset's).")
@click.option("--dtype", type=click.Choice(DTYPES), default="fp32", show_default=True)
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True, max=1),
    default=1.0,
    show_default=True,
    help="Fraction of time spent computing (the rest rests), to give nodes different compute on one machine.",
)
@threads_option
@click.option("--out", type=click.File("a"), help="Append each appropriate nonce to this file as it is found.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@json_option
def mine(
    preset: str,
    seed_hex: str,
    pubkey: str | None,
    key: str | None,
    home: Path,
    seconds: float,
    start_nonce: int,
    batch_size: int | None,
    dtype: str,
    budget: float,
    threads: int,
    out: TextIO | None,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Mine the race of --seed for --seconds; Ctrl-C stops early and keeps what was found.

    In bf16 the candidates are confirmed in fp32 (the validators' precision) before they count.
    """
    import torch

    from racenet.pow.miner import Miner
    from racenet.pow.race import build_race

    public_key = _public_key(pubkey, key, home)
    torch.set_num_threads(threads)
    try:
        seed = bytes.fromhex(seed_hex)
        chosen = build_race(preset, seed, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    except ValueError as e:
        fail(f"--seed: {e}")
    confirm = build_race(preset, seed) if dtype != "fp32" else None
    found = _AppendOnly(out)
    with (
        _progress_bar(not no_progress and not as_json) as bar,
        Miner(chosen, public_key, confirm=confirm, batch_size=batch_size) as miner,
    ):
        task = bar.add_task("race", total=seconds, tried=0, found=0, rate=0.0)
        stats = miner.run(
            seconds,
            found,
            start_nonce=start_nonce,
            compute_budget=budget,
            on_batch=partial(_show_progress, bar, task, seconds),
        )
    summary = {
        "preset": preset,
        "tried": stats.tried,
        "found": len(found),
        "nonces": list(found),
        "seconds": round(stats.seconds, 3),
        "nonces_per_s": round(stats.nonces_per_second, 2),
        "next_nonce": stats.next_nonce,
        "interrupted": stats.interrupted,
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"{stats.tried} nonces in {stats.seconds:.1f} s ({stats.nonces_per_second:.1f}/s), "
        f"{len(found)} appropriate; next nonce {stats.next_nonce}" + (" (interrupted)" if stats.interrupted else "")
    )


@race.command()
@preset_option
@click.option("--difficulty", type=click.IntRange(min=2), default=DIFFICULTY, show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--nonces", type=click.IntRange(min=1), default=4096, show_default=True, help="Forward passes per seed.")
@click.option("--noise", is_flag=True, help="Also measure honest mismatch rates (batch, threads, kernel, dtype).")
@click.option("--noise-seeds", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--noise-nonces", type=click.IntRange(min=256), default=1024, show_default=True)
@threads_option
@json_option
def calibrate(
    preset: str,
    difficulty: int,
    seeds: int,
    nonces: int,
    noise: bool,
    noise_seeds: int,
    noise_nonces: int,
    threads: int,
    as_json: bool,
) -> None:
    """Calibrate the distance threshold for --difficulty and show how much it varies between race seeds."""
    import torch

    from racenet.pow.calibrate import calibrate as calibrate_threshold
    from racenet.pow.calibrate import measure_noise

    torch.set_num_threads(threads)
    result = calibrate_threshold(preset, difficulty=difficulty, seeds=seeds, nonces=nonces)
    mismatches = measure_noise(preset, seeds=noise_seeds, nonces=noise_nonces) if noise else []
    if as_json:
        echo_json(
            {
                "preset": preset,
                "difficulty": difficulty,
                "threshold": result.threshold,
                "per_seed": result.per_seed,
                "per_seed_rate": result.per_seed_rate,
                "samples": result.samples,
                "noise": [{"setting": m.setting, "appropriate": m.appropriate, "failed": m.failed} for m in mismatches],
            }
        )
        return
    click.echo(f"preset {preset}, difficulty {difficulty}: threshold {result.threshold:.7f} ({result.samples} samples)")
    for index, (threshold, rate) in enumerate(zip(result.per_seed, result.per_seed_rate, strict=True)):
        click.echo(
            f"  seed {index}: own threshold {threshold:.7f}, pass rate at the pooled one {rate:.3f} / {difficulty}"
        )
    for m in mismatches:
        click.echo(
            f"  {m.setting:32s} {m.failed:4d}/{m.appropriate:<5d} failed: {m.rate:.4f}  max |diff| {m.max_abs_diff:.1e}"
        )


@race.command()
@node_option
@json_option
@wide_option
def status(node: str, as_json: bool, wide: bool) -> None:
    """The current cycle and phase, this cycle's claims (committee, votes, escalation, standing), and every
    node's weight, validator power and last outcome."""
    with chain_client(node) as client:
        cycle, nodes = client.query(chain_race.CYCLE), client.query(chain_race.NODES).nodes
        claims = client.query(chain_race.CLAIMS).claims
    if as_json:
        echo_json({"cycle": to_json(cycle), "claims": to_json(claims), "nodes": to_json(nodes)})
        return
    starts = cycle.phase_starts
    click.echo(
        f"height {cycle.height}: cycle {cycle.cycle}, phase {cycle.phase} "
        f"(race {starts[Phase.RACE]}, reveal {starts[Phase.REVEAL]}, vote {starts[Phase.VOTE]}, "
        f"escalate {starts[Phase.ESCALATE]}, tally {cycle.tally_height}); preset {cycle.preset}, "
        f"difficulty 1/{DIFFICULTY}"
    )
    console, name = table_console(wide), address_text(wide)
    if claims:
        console.print(_claims_table(claims, name))
    table = Table(title="nodes")
    for column in ("node", "weight", "power", "committed"):
        table.add_column(column, no_wrap=True)
    table.add_column("last outcome")
    for n in nodes:
        table.add_row(name(n.address), str(n.weight), str(n.power), _text(n.committed), _outcome(n.last_outcome))
    console.print(table)


def _claims_table(claims: tuple[chain_race.ClaimInfo, ...], name: Callable[[bytes], str] = encode_address) -> Table:
    """This cycle's claims: who checks each, how they voted (accept / reject weight), and where it stands."""
    table = Table(title="claims this cycle", collapse_padding=True)
    for column in ("participant", "count", "revealed", "committee", "accept / reject weight", "escalated", "standing"):
        table.add_column(column, no_wrap=column not in ("committee", "accept / reject weight"))
    for c in claims:
        accept = sum(v.weight for v in c.votes if v.accept)
        reject = sum(v.weight for v in c.votes if not v.accept)
        table.add_row(
            name(c.participant),
            str(c.count),
            "yes" if c.revealed else "no",
            " ".join(encode_address(v)[-6:] for v in c.committee) or "-",
            f"{accept} / {reject} ({len(c.votes)} votes)",
            "yes" if c.escalated else "no",
            c.standing,
        )
    return table


def _outcome(last: chain_race.Outcome | None) -> str:
    """A node's last outcome in words: its cycle, status, claim, committee size and escalation."""
    if last is None:
        return "-"
    escalated = ", escalated" if last.escalated else ""
    return f"cycle {last.cycle}: {last.status}, claimed {last.claimed}, committee of {len(last.committee)}{escalated}"


def _text(value: object) -> str:
    return "-" if value is None else str(value)
