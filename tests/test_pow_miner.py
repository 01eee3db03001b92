"""The miner: finds appropriate vectors, keeps them when stopped or interrupted, yields, throttles."""

from __future__ import annotations

import threading

import pytest
import torch

from racenet.crypto.keys import PrivateKey
from racenet.pow.miner import mine
from racenet.pow.race import Race, build_race
from racenet.pow.verifier import verify_nonces
from tests.pow_helpers import LONG, SEED, StopAfter

NODE_KEY = PrivateKey(b"\x11" * 32).public_key.raw


@pytest.fixture(scope="module")
def race() -> Race:
    torch.set_num_threads(2)
    return build_race("tiny", SEED)


def test_mined_nonces_are_appropriate(race: Race) -> None:
    stop = threading.Event()
    found = StopAfter(8, stop)
    stats = mine(race, NODE_KEY, LONG, found, stop=stop, batch_size=512)
    assert len(found) >= 8 and stats.found == len(found) and not stats.interrupted
    assert stats.next_nonce == stats.tried and stats.tried % 512 == 0
    assert all(verify_nonces(race, NODE_KEY, found))


def test_resuming_from_next_nonce_continues_the_sequence(race: Race) -> None:
    stop = threading.Event()
    first, second = StopAfter(2, stop), StopAfter(2, stop)
    stats = mine(race, NODE_KEY, LONG, first, stop=stop, batch_size=512)
    stop.clear()
    mine(race, NODE_KEY, LONG, second, stop=stop, batch_size=512, start_nonce=stats.next_nonce)
    assert min(second) >= stats.next_nonce > max(first)


def test_ctrl_c_keeps_the_nonces_found_so_far(race: Race) -> None:
    found: list[int] = []

    def ctrl_c_after_finds() -> bool:
        if len(found) >= 3:
            raise KeyboardInterrupt
        return False

    stats = mine(race, NODE_KEY, LONG, found, should_yield=ctrl_c_after_finds, batch_size=512)
    assert stats.interrupted and len(found) >= 3
    assert all(verify_nonces(race, NODE_KEY, found))


def test_yield_hook_pauses_mining(race: Race) -> None:
    stats = mine(race, NODE_KEY, 0.3, [], should_yield=lambda: True)
    assert stats.tried == 0 and stats.seconds >= 0.3


def test_mining_resumes_when_the_hook_releases_the_cpu(race: Race) -> None:
    polls: list[int] = []

    def busy_for_three_polls() -> bool:
        polls.append(1)
        return len(polls) <= 3

    stop = threading.Event()
    found = StopAfter(1, stop)
    stats = mine(race, NODE_KEY, LONG, found, stop=stop, should_yield=busy_for_three_polls, batch_size=512)
    assert len(polls) > 3 and stats.tried > 0 and found


def test_stop_event_ends_mining_at_once(race: Race) -> None:
    stop = threading.Event()
    stop.set()
    assert mine(race, NODE_KEY, LONG, [], stop=stop).tried == 0


def test_compute_budget_is_a_fraction_of_time(race: Race) -> None:
    with pytest.raises(ValueError, match="compute_budget"):
        mine(race, NODE_KEY, 1.0, [], compute_budget=0.0)
    stop = threading.Event()
    found = StopAfter(1, stop)
    assert mine(race, NODE_KEY, LONG, found, stop=stop, compute_budget=0.5, batch_size=512).tried > 0
