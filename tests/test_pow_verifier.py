"""The verifier and the chain's verdict on its counts: honest proofs pass (also under bf16 noise), attacks fail."""

from __future__ import annotations

import random
import threading

import pytest
import torch

from racenet.chain.modules.race import Params as RaceParams
from racenet.crypto.keys import PrivateKey
from racenet.pow.decision import (
    ALPHA,
    P_HONEST,
    SAMPLE_SIZE,
    binomial_tail,
    detection_power,
    max_mismatches,
)
from racenet.pow.miner import Miner
from racenet.pow.race import Race, build_race
from racenet.pow.verifier import verify_nonces
from tests.pow_helpers import LONG, SEED, StopAfter

HONEST = PrivateKey(b"\x21" * 32).public_key.raw
OTHER = PrivateKey(b"\x22" * 32).public_key.raw
POOL = 96
CHAIN = RaceParams()


def mine_until(race: Race, public_key: bytes, count: int, confirm: Race | None = None) -> list[int]:
    """Mine until `count` appropriate nonces are found."""
    stop = threading.Event()
    found = StopAfter(count, stop)
    with Miner(race, public_key, batch_size=4096, confirm=confirm) as miner:
        miner.run(LONG, found, stop=stop)
    return found[:count]


def proof_passes(race: Race, public_key: bytes, nonces: list[int]) -> bool:
    """The chain's verdict on what the verifier finds among opened nonces."""
    results = verify_nonces(race, public_key, nonces)
    return CHAIN.verdict(len(results), results.count(False))


@pytest.fixture(scope="module")
def race() -> Race:
    torch.set_num_threads(2)
    return build_race("tiny", SEED)


@pytest.fixture(scope="module")
def proof(race: Race) -> list[int]:
    return mine_until(race, HONEST, SAMPLE_SIZE)


def test_honest_proof_is_accepted(race: Race, proof: list[int]) -> None:
    assert verify_nonces(race, HONEST, proof) == [True] * SAMPLE_SIZE
    assert proof_passes(race, HONEST, proof)


def test_random_unmined_nonces_are_rejected(race: Race) -> None:
    nonces = [random.Random(5).getrandbits(64) for _ in range(SAMPLE_SIZE)]
    assert not proof_passes(race, HONEST, nonces)


def test_out_of_range_nonces_fail_without_raising(race: Race, proof: list[int]) -> None:
    assert verify_nonces(race, HONEST, [-1, proof[0], 1 << 64]) == [False, True, False]


def test_nonces_copied_from_another_node_are_rejected(race: Race, proof: list[int]) -> None:
    assert not proof_passes(race, OTHER, proof)


def test_proof_from_a_smaller_model_is_rejected(proof: list[int]) -> None:
    assert not proof_passes(build_race("small", SEED), HONEST, proof)


def test_proof_from_another_race_seed_is_rejected(proof: list[int]) -> None:
    """M5: nonces mined before the race seed existed (for a guess of it, or last cycle's) are garbage under it."""
    assert not proof_passes(build_race("tiny", bytes(32)), HONEST, proof)


def test_small_claims_tolerate_no_bad_nonce(race: Race, proof: list[int]) -> None:
    """C2: a claim of one garbage nonce opens it and is rejected; so is an honest small claim with one fake."""
    garbage = random.Random(9).getrandbits(64)
    assert not proof_passes(race, HONEST, [garbage])
    assert proof_passes(race, HONEST, proof[:5]) and not proof_passes(race, HONEST, [*proof[:4], garbage])


def honest_bf16_rejections(race: Race, pool: list[int], trials: int) -> float:
    """Fraction of `trials` proofs, each opening SAMPLE_SIZE nonces drawn from a bf16 miner's pool, rejected."""
    reproduced = dict(zip(pool, verify_nonces(race, HONEST, pool), strict=True))
    pick = random.Random(7)
    rejected = 0
    for _ in range(trials):
        opened = pick.sample(pool, SAMPLE_SIZE)
        rejected += not CHAIN.verdict(SAMPLE_SIZE, sum(not reproduced[n] for n in opened))
    return rejected / trials


def test_honest_bf16_miner_checked_in_fp32_is_accepted(race: Race) -> None:
    bf16 = build_race("tiny", SEED, dtype=torch.bfloat16)
    confirmed = mine_until(bf16, HONEST, POOL, confirm=race)
    unconfirmed = mine_until(bf16, HONEST, POOL)
    fpr_confirmed = honest_bf16_rejections(race, confirmed, 200)
    fpr_unconfirmed = honest_bf16_rejections(race, unconfirmed, 200)
    mismatches = verify_nonces(race, HONEST, unconfirmed).count(False)
    print(
        f"\nbf16 miner, fp32 checker, 200 proofs of {SAMPLE_SIZE}: rejected {fpr_confirmed:.3f} "
        f"with fp32 confirmation, {fpr_unconfirmed:.3f} without "
        f"({mismatches}/{POOL} unconfirmed nonces did not reproduce)"
    )
    assert fpr_confirmed == 0.0


def test_binomial_tail() -> None:
    assert binomial_tail(0, 5, 0.3) == 1.0
    assert binomial_tail(1, 2, 0.5) == pytest.approx(0.75)
    assert binomial_tail(3, 3, 0.1) == pytest.approx(1e-3)
    assert binomial_tail(1, 10, 0.0) == 0.0


def test_decision_rule_and_its_error_rates() -> None:
    k = max_mismatches(SAMPLE_SIZE)
    assert CHAIN.verdict(SAMPLE_SIZE, k) and not CHAIN.verdict(SAMPLE_SIZE, k + 1)
    assert binomial_tail(k + 1, SAMPLE_SIZE, P_HONEST) < ALPHA
    powers = {f: detection_power(SAMPLE_SIZE, f) for f in (0.1, 0.25, 0.5, 1.0)}
    print(f"\nn={SAMPLE_SIZE} p_honest={P_HONEST} alpha={ALPHA}: accept up to {k} failures; power {powers}")
    assert powers[1.0] == pytest.approx(1.0) and powers[0.5] > 0.999
