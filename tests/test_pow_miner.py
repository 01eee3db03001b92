"""The miner: finds appropriate vectors, keeps them when stopped or interrupted, resumes, throttles."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from racenet.crypto.keys import PrivateKey
from racenet.pow.miner import Miner
from racenet.pow.race import Race, build_race
from racenet.pow.verifier import verify_nonces
from tests.pow_helpers import LONG, SEED, StopAfter

NODE_KEY = PrivateKey(b"\x11" * 32).public_key.raw


@pytest.fixture(scope="module")
def race() -> Race:
    torch.set_num_threads(2)
    return build_race("tiny", SEED)


@pytest.fixture
def miner(race: Race) -> Iterator[Miner]:
    with Miner(race, NODE_KEY, batch_size=512) as opened:
        yield opened


def test_mined_nonces_are_appropriate(race: Race, miner: Miner) -> None:
    stop = threading.Event()
    found = StopAfter(8, stop)
    stats = miner.run(LONG, found, stop=stop)
    assert len(found) >= 8 and stats.found == len(found) and not stats.interrupted
    assert stats.next_nonce == stats.tried and stats.tried % 512 == 0
    assert all(verify_nonces(race, NODE_KEY, found))


def test_resuming_from_next_nonce_continues_the_sequence(miner: Miner) -> None:
    stop = threading.Event()
    first, second = StopAfter(2, stop), StopAfter(2, stop)
    stats = miner.run(LONG, first, stop=stop)
    stop.clear()
    miner.run(LONG, second, stop=stop, start_nonce=stats.next_nonce)
    assert min(second) >= stats.next_nonce > max(first)


def test_ctrl_c_keeps_the_nonces_found_so_far(race: Race, miner: Miner) -> None:
    found: list[int] = []

    def ctrl_c_after_finds() -> bool:
        if len(found) >= 3:
            raise KeyboardInterrupt
        return False

    stats = miner.run(LONG, found, should_yield=ctrl_c_after_finds)
    assert stats.interrupted and len(found) >= 3 and stats.found == len(found)
    assert all(verify_nonces(race, NODE_KEY, found))


def test_stop_event_ends_mining_at_once(miner: Miner) -> None:
    stop = threading.Event()
    stop.set()
    assert miner.run(LONG, [], stop=stop).tried == 0


def test_compute_budget_is_a_fraction_of_time(miner: Miner) -> None:
    with pytest.raises(ValueError, match="compute_budget"):
        miner.run(1.0, [], compute_budget=0.0)
    stop = threading.Event()
    found = StopAfter(1, stop)
    assert miner.run(LONG, found, stop=stop, compute_budget=0.5).tried > 0
