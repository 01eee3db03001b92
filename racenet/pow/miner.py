"""The miner: tries consecutive nonces for a node and collects the appropriate ones.

Batches are pipelined: while the model runs batch k (PyTorch releases the GIL), a worker thread hashes the
inputs and permutations of batch k+1. Between batches the miner checks, in order: the stop event and the
deadline; the yield hook (`should_yield() -> bool`, polled every `YIELD_POLL` seconds while it returns True, so
user requests get the CPU at once); and the compute budget (a duty cycle: after a batch that took t seconds it
rests t * (1 - budget) / budget, so nonces/s scale with the budget).

Found nonces are appended to the caller's list the moment their batch finishes, so nothing found is lost when
mining stops early: by the deadline, the stop event, or Ctrl-C (KeyboardInterrupt is caught and reported in the
stats; the batch in flight is dropped). A batch started before the deadline is finished, so mining may overrun
`seconds` by one batch. Nonces are u64 and mining resumes from `MiningStats.next_nonce`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from racenet.pow.race import Race
from racenet.pow.vectors import NONCE_LIMIT, NonceBatch, node_seed

YIELD_POLL = 0.05
# bf16 and fp32 distances of the same nonce differed by at most 6.0e-3 (paper), 4.2e-3 (small), 4.4e-3 (tiny) over
# 65,536 nonce x permutation pairs each; a bf16 miner with a confirming fp32 race treats every nonce below
# threshold + CONFIRM_MARGIN as a candidate (about 2.6 times as many as are appropriate).
CONFIRM_MARGIN = 0.01


@dataclass(frozen=True)
class MiningStats:
    """What one mining run did: nonces tried, appropriate vectors found, time, and where to resume."""

    tried: int
    found: int
    seconds: float
    next_nonce: int
    interrupted: bool

    @property
    def nonces_per_second(self) -> float:
        """Nonces tried per second of wall time (including pauses and budget rests)."""
        return self.tried / self.seconds if self.seconds > 0 else 0.0


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


class _Miner:
    """One mining run's state; `mine` is the public entry point."""

    def __init__(
        self, race: Race, public_key: bytes, found: list[int], stop: threading.Event, confirm: Race | None
    ) -> None:
        self.race = race
        self.confirm = confirm
        self.node = node_seed(public_key)
        self.found = found
        self.stop = stop
        self.tried = 0
        self.found_here = 0

    def batches(self, start: int, size: int, pool: ThreadPoolExecutor) -> Iterator[NonceBatch]:
        """Yield prepared batches of consecutive nonces, preparing the next one while the caller computes."""
        pending = pool.submit(self.race.prepare, self.node, range(start, min(start + size, NONCE_LIMIT)))
        while True:
            batch = pending.result()
            if not batch.nonces:
                return
            after = batch.nonces[-1] + 1
            pending = pool.submit(self.race.prepare, self.node, range(after, min(after + size, NONCE_LIMIT)))
            yield batch

    def run_batch(self, batch: NonceBatch) -> None:
        """Forward pass of one batch; its appropriate nonces (confirmed, if asked) go to the caller's list."""
        limit = self.race.threshold + (CONFIRM_MARGIN if self.confirm is not None else 0.0)
        distances = self.race.distances(batch).tolist()
        candidates = [n for n, d in zip(batch.nonces, distances, strict=True) if d < limit]
        for nonce in self.confirmed(candidates):
            self.found.append(nonce)
            self.found_here += 1
        self.tried += len(batch.nonces)

    def confirmed(self, candidates: list[int]) -> list[int]:
        """The candidates that are appropriate in the confirming race (all of them without one)."""
        if self.confirm is None or not candidates:
            return candidates
        distances = self.confirm.distances(self.confirm.prepare(self.node, candidates)).tolist()
        return [n for n, d in zip(candidates, distances, strict=True) if d < self.confirm.threshold]

    def pause(self, should_yield: Callable[[], bool] | None, deadline: float) -> None:
        """Wait while the yield hook asks for the CPU (until the deadline or a stop)."""
        while should_yield is not None and should_yield() and time.monotonic() < deadline:
            if self.stop.wait(YIELD_POLL):
                return


def mine(
    race: Race,
    public_key: bytes,
    seconds: float,
    found: list[int],
    *,
    start_nonce: int = 0,
    batch_size: int | None = None,
    stop: threading.Event | None = None,
    should_yield: Callable[[], bool] | None = None,
    compute_budget: float = 1.0,
    confirm: Race | None = None,
    progress: bool = False,
) -> MiningStats:
    """Mine for `seconds` from `start_nonce`, appending each appropriate nonce to `found` as soon as it is known.

    `confirm` is the same race in fp32 for a miner that runs in bf16: nonces within `CONFIRM_MARGIN` of the
    threshold are recomputed in it and only those appropriate there are kept, so the proof holds exactly what
    an fp32 validator reproduces (cost: one small fp32 batch per bf16 batch that holds a candidate; about
    2.6 candidates per 900 nonces).
    """
    if not 0.0 < compute_budget <= 1.0:
        raise ValueError(f"compute_budget is a fraction of time in (0, 1], got {compute_budget}")
    miner = _Miner(race, public_key, found, stop or threading.Event(), confirm)
    started = time.monotonic()
    deadline = started + seconds
    interrupted = False
    with _progress_bar(progress) as bar, ThreadPoolExecutor(max_workers=1) as pool:
        task = bar.add_task("race", total=seconds, tried=0, found=0, rate=0.0)
        try:
            for batch in miner.batches(start_nonce, batch_size or race.preset.batch_size, pool):
                miner.pause(should_yield, deadline)
                if miner.stop.is_set() or time.monotonic() >= deadline:
                    break
                began = time.monotonic()
                miner.run_batch(batch)
                elapsed = time.monotonic() - started
                rate = miner.tried / elapsed
                bar.update(task, completed=min(elapsed, seconds), tried=miner.tried, found=miner.found_here, rate=rate)
                miner.stop.wait((time.monotonic() - began) * (1.0 - compute_budget) / compute_budget)
        except KeyboardInterrupt:
            interrupted = True
    return MiningStats(
        miner.tried, miner.found_here, time.monotonic() - started, start_nonce + miner.tried, interrupted
    )
