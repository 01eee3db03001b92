"""The miner's policy on a fake clock: budget rests, yielding, stopping, progress, resuming and thread use.

Time is fake (it moves by BATCH_SECONDS per batch and by each wait's timeout, and no wait sleeps), so the tests
check the exact rests and polls and never depend on the machine's speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields

import pytest
import torch

from racenet.crypto.keys import PrivateKey
from racenet.node.compute import ComputeThread
from racenet.pow.miner import YIELD_POLL, Miner, MiningStats
from racenet.pow.race import Race, build_race
from racenet.pow.vectors import NonceBatch
from tests.pow_helpers import LONG, SEED

NODE_KEY = PrivateKey(b"\x12" * 32).public_key.raw
BATCH = 256
BATCH_SECONDS = 1.0


class FakeTime:
    """A clock that moves only when a batch runs or a wait times out."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def batch(self, compute: Callable[[], list[int]]) -> list[int]:
        """Run a batch's computation, which takes BATCH_SECONDS."""
        self.now += BATCH_SECONDS
        return compute()


class FakeStop(threading.Event):
    """A stop event whose waits return at once, move the fake clock by their timeout and are recorded."""

    def __init__(self, clock: FakeTime) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []
        self.waited_on: set[int] = set()

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.waited_on.add(threading.get_ident())
        self.clock.now += timeout
        return self.is_set()


@dataclass(frozen=True)
class ThreadRecordingRace(Race):
    """The race, recording the thread that prepares each batch."""

    preparing_threads: list[int] = field(default_factory=list)

    def prepare(self, node: bytes, nonces: Sequence[int]) -> NonceBatch:
        self.preparing_threads.append(threading.get_ident())
        return super().prepare(node, nonces)


def stop_after(batches: int, stop: threading.Event, seen: list[MiningStats]) -> Callable[[MiningStats], None]:
    """An `on_batch` that records the stats and sets `stop` after `batches` batches."""

    def on_batch(stats: MiningStats) -> None:
        seen.append(stats)
        if len(seen) >= batches:
            stop.set()

    return on_batch


@pytest.fixture(scope="module")
def race() -> Race:
    torch.set_num_threads(2)
    return build_race("tiny", SEED)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def miner(race: Race, clock: FakeTime) -> Iterator[Miner]:
    with Miner(race, NODE_KEY, batch_size=BATCH, execute=clock.batch, clock=clock) as opened:
        yield opened


@pytest.mark.parametrize(("budget", "rest"), [(1.0, 0.0), (0.5, 1.0), (0.25, 3.0)])
def test_each_batch_is_followed_by_the_budgets_rest(miner: Miner, clock: FakeTime, budget: float, rest: float) -> None:
    stop = FakeStop(clock)
    seen: list[MiningStats] = []
    stats = miner.run(LONG, [], stop=stop, compute_budget=budget, on_batch=stop_after(3, stop, seen))
    assert stop.waits == [rest] * 3
    assert stats.tried == 3 * BATCH and stats.seconds == pytest.approx(3 * (BATCH_SECONDS + rest))
    assert stats.nonces_per_second == pytest.approx(budget * BATCH / BATCH_SECONDS)


def test_yield_pauses_mining_while_the_hook_asks_and_resumes_after(miner: Miner, clock: FakeTime) -> None:
    stop = FakeStop(clock)
    seen: list[MiningStats] = []
    batches_at_each_poll: list[int] = []

    def busy_on_polls_two_to_four() -> bool:
        batches_at_each_poll.append(len(seen))
        return 2 <= len(batches_at_each_poll) <= 4

    stats = miner.run(LONG, [], stop=stop, should_yield=busy_on_polls_two_to_four, on_batch=stop_after(2, stop, seen))
    assert batches_at_each_poll == [0, 1, 1, 1, 1]
    assert stop.waits == [0.0, YIELD_POLL, YIELD_POLL, YIELD_POLL, 0.0]
    assert stats.tried == 2 * BATCH


def test_yielding_until_the_deadline_mines_nothing(miner: Miner, clock: FakeTime) -> None:
    stop = FakeStop(clock)
    stats = miner.run(1.0, [], stop=stop, should_yield=lambda: True)
    assert stats.tried == 0 and stats.found == 0 and not stats.interrupted
    assert stop.waits and set(stop.waits) == {YIELD_POLL} and clock.now >= 1.0


def test_the_deadline_ends_mining_after_the_batch_in_flight(miner: Miner, clock: FakeTime) -> None:
    stats = miner.run(2.5 * BATCH_SECONDS, [], stop=FakeStop(clock))
    assert stats.tried == 3 * BATCH and stats.next_nonce == 3 * BATCH


def test_on_batch_gets_the_stats_after_every_batch(miner: Miner, clock: FakeTime) -> None:
    stop = FakeStop(clock)
    seen: list[MiningStats] = []
    found: list[int] = []
    stats = miner.run(LONG, found, start_nonce=1000, stop=stop, on_batch=stop_after(3, stop, seen))
    assert [s.tried for s in seen] == [BATCH, 2 * BATCH, 3 * BATCH]
    assert [s.next_nonce for s in seen] == [1000 + BATCH, 1000 + 2 * BATCH, 1000 + 3 * BATCH]
    assert seen[-1] == stats and stats.found == len(found)


def test_ctrl_c_in_progress_keeps_the_finished_batches(miner: Miner, clock: FakeTime) -> None:
    seen: list[MiningStats] = []

    def ctrl_c_after_two_batches(stats: MiningStats) -> None:
        seen.append(stats)
        if len(seen) == 2:
            raise KeyboardInterrupt

    found: list[int] = []
    stats = miner.run(LONG, found, stop=FakeStop(clock), on_batch=ctrl_c_after_two_batches)
    assert stats.interrupted and stats.tried == 2 * BATCH and stats.next_nonce == 2 * BATCH
    assert stats.found == len(found) == seen[-1].found


def test_runs_from_next_nonce_mine_the_same_nonces_as_one_run(race: Race) -> None:
    def mine_batches(miner: Miner, batches: int, start_nonce: int, found: list[int]) -> MiningStats:
        stop = threading.Event()
        return miner.run(LONG, found, start_nonce=start_nonce, stop=stop, on_batch=stop_after(batches, stop, []))

    whole: list[int] = []
    with Miner(race, NODE_KEY, batch_size=BATCH) as miner:
        mine_batches(miner, 8, 0, whole)
    pieces: list[int] = []
    with Miner(race, NODE_KEY, batch_size=BATCH) as miner:
        first = mine_batches(miner, 5, 0, pieces)
        second = mine_batches(miner, 3, first.next_nonce, pieces)
    assert first.next_nonce == 5 * BATCH and second.next_nonce == 8 * BATCH
    assert pieces == whole and whole


def test_one_preparation_thread_serves_every_run(race: Race, clock: FakeTime) -> None:
    recording = ThreadRecordingRace(**{f.name: getattr(race, f.name) for f in fields(Race)})
    with Miner(recording, NODE_KEY, batch_size=BATCH, execute=clock.batch, clock=clock) as miner:
        for _ in range(3):
            stop = FakeStop(clock)
            miner.run(LONG, [], stop=stop, on_batch=stop_after(2, stop, []))
    assert len(set(recording.preparing_threads)) == 1
    assert threading.get_ident() not in recording.preparing_threads


def test_batches_run_on_execute_and_waits_stay_on_the_calling_thread(race: Race, clock: FakeTime) -> None:
    compute = ComputeThread()
    computed_on: set[int] = set()

    def on_compute_thread(work: Callable[[], list[int]]) -> list[int]:
        def recorded() -> list[int]:
            computed_on.add(threading.get_ident())
            return clock.batch(work)

        return compute.run(recorded)

    stop = FakeStop(clock)
    try:
        with Miner(race, NODE_KEY, batch_size=BATCH, execute=on_compute_thread, clock=clock) as miner:
            miner.run(LONG, [], stop=stop, should_yield=lambda: clock.now < 0.2, on_batch=stop_after(2, stop, []))
    finally:
        compute.pool.shutdown()
    assert YIELD_POLL in stop.waits and stop.waited_on == {threading.get_ident()}
    assert len(computed_on) == 1 and threading.get_ident() not in computed_on
