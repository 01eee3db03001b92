"""The miner: tries consecutive nonces for a node and collects the appropriate ones.

A `Miner` keeps what lasts across runs: the node seed, the batch size and the thread that prepares batches (it
hashes the inputs and permutations of batch k+1 while the model runs batch k; PyTorch releases the GIL).
`Miner.run` is the one place of the mining policy. Before each batch it waits while the yield hook
(`should_yield() -> bool`) returns True, polling every `YIELD_POLL` seconds so user requests get the CPU at once,
and then ends on the stop event or the deadline. After each batch it rests for the compute budget, a duty cycle:
a batch that took t seconds is followed by t * (1 - budget) / budget seconds of rest, so nonces/s scale with the
budget.

Each batch's computation runs on the miner's `execute` (the calling thread by default); yielding and resting
happen on the calling thread. A node passes its compute thread as `execute`, so inference runs while the miner
yields or rests, and a user request waits at most one batch.

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
from functools import partial

from racenet.pow.race import Race
from racenet.pow.vectors import NONCE_LIMIT, NonceBatch, is_appropriate, node_seed

YIELD_POLL = 0.05
# bf16 and fp32 distances of the same nonce differed by at most 6.0e-3 (paper), 4.2e-3 (small), 4.4e-3 (tiny) over
# 65,536 nonce x permutation pairs each; a bf16 miner with a confirming fp32 race treats every nonce below
# threshold + CONFIRM_MARGIN as a candidate (about 2.6 times as many as are appropriate).
CONFIRM_MARGIN = 0.01

Execute = Callable[[Callable[[], list[int]]], list[int]]
"""Runs one batch's computation (which returns the batch's appropriate nonces) and returns its result."""


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


@dataclass
class _Policy:
    """When one run mines: the yield hook, the stop event, the deadline and the compute budget's duty cycle."""

    stop: threading.Event
    should_yield: Callable[[], bool] | None
    budget: float
    clock: Callable[[], float]
    deadline: float

    def may_mine(self) -> bool:
        """Wait while the yield hook asks for the CPU, then whether to go on (not stopped, before the deadline)."""
        while self.going() and self.should_yield is not None and self.should_yield():
            self.stop.wait(YIELD_POLL)
        return self.going()

    def going(self) -> bool:
        """Whether the run goes on: not stopped and before the deadline."""
        return not self.stop.is_set() and self.clock() < self.deadline

    def rest(self, busy: float) -> None:
        """Rest after `busy` seconds of computing, so that computing takes `budget` of the time (a stop ends it)."""
        self.stop.wait(busy * (1.0 - self.budget) / self.budget)


@dataclass
class _Tally:
    """One run's counters."""

    start_nonce: int
    started: float
    tried: int = 0
    found: int = 0

    def stats(self, now: float, interrupted: bool = False) -> MiningStats:
        """The run so far as `MiningStats`."""
        return MiningStats(self.tried, self.found, now - self.started, self.start_nonce + self.tried, interrupted)


def _inline(compute: Callable[[], list[int]]) -> list[int]:
    """Run a batch's computation on the calling thread."""
    return compute()


class Miner:
    """Mines one race for one node; close it (or use it as a context manager) to stop its preparation thread.

    `confirm` is the same race in fp32 for a miner whose `race` runs in bf16: nonces within `CONFIRM_MARGIN` of
    the threshold are recomputed in it and only those appropriate there are kept, so the proof holds exactly what
    an fp32 validator reproduces (cost: one small fp32 batch per bf16 batch that holds a candidate; about 2.6
    candidates per 900 nonces). `execute` runs each batch's computation and `clock` times batches, rests and the
    deadline. One run at a time.
    """

    def __init__(
        self,
        race: Race,
        public_key: bytes,
        *,
        confirm: Race | None = None,
        batch_size: int | None = None,
        execute: Execute = _inline,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.race = race
        self.confirm = confirm
        self.node = node_seed(public_key)
        self.batch_size = batch_size or race.preset.batch_size
        self.execute = execute
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="race-prepare")

    def __enter__(self) -> Miner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the preparation thread once the batch it is preparing is done."""
        self.pool.shutdown(cancel_futures=True)

    def run(
        self,
        seconds: float,
        found: list[int],
        *,
        start_nonce: int = 0,
        stop: threading.Event | None = None,
        should_yield: Callable[[], bool] | None = None,
        compute_budget: float = 1.0,
        on_batch: Callable[[MiningStats], None] | None = None,
    ) -> MiningStats:
        """Mine for `seconds` from `start_nonce`, appending each appropriate nonce to `found` as soon as it is known.

        `on_batch` gets the run's stats after every batch (progress); the policy is the module docstring's.
        """
        if not 0.0 < compute_budget <= 1.0:
            raise ValueError(f"compute_budget is a fraction of time in (0, 1], got {compute_budget}")
        tally = _Tally(start_nonce, self.clock())
        policy = _Policy(stop or threading.Event(), should_yield, compute_budget, self.clock, tally.started + seconds)
        try:
            for batch in self._batches(start_nonce):
                if not policy.may_mine():
                    break
                busy = self._mine_batch(batch, found, tally)
                if on_batch is not None:
                    on_batch(tally.stats(self.clock()))
                policy.rest(busy)
        except KeyboardInterrupt:
            return tally.stats(self.clock(), interrupted=True)
        return tally.stats(self.clock())

    def _batches(self, start: int) -> Iterator[NonceBatch]:
        """Yield prepared batches of consecutive nonces, preparing the next one while the caller computes."""
        pending = self.pool.submit(self._prepare, start)
        while True:
            batch = pending.result()
            if not batch.nonces:
                return
            pending = self.pool.submit(self._prepare, batch.nonces[-1] + 1)
            yield batch

    def _prepare(self, start: int) -> NonceBatch:
        """Inputs and permutations of the batch of nonces from `start` (empty past the last u64)."""
        return self.race.prepare(self.node, range(start, min(start + self.batch_size, NONCE_LIMIT)))

    def _mine_batch(self, batch: NonceBatch, found: list[int], tally: _Tally) -> float:
        """Compute one batch on `execute` and record its appropriate nonces; returns the seconds it took."""
        began = self.clock()
        nonces = self.execute(partial(self._appropriate, batch))
        busy = self.clock() - began
        for nonce in nonces:
            found.append(nonce)
        tally.tried += len(batch.nonces)
        tally.found += len(nonces)
        return busy

    def _appropriate(self, batch: NonceBatch) -> list[int]:
        """Forward pass of one batch: its appropriate nonces (confirmed in the fp32 race, if there is one)."""
        limit = self.race.threshold + (CONFIRM_MARGIN if self.confirm is not None else 0.0)
        distances = self.race.distances(batch).tolist()
        candidates = [n for n, d in zip(batch.nonces, distances, strict=True) if is_appropriate(d, limit)]
        if self.confirm is None or not candidates:
            return candidates
        confirmed = self.confirm.distances(self.confirm.prepare(self.node, candidates)).tolist()
        return [n for n, d in zip(candidates, confirmed, strict=True) if is_appropriate(d, self.confirm.threshold)]
