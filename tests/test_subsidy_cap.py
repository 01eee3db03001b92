"""The cap on the subsidy per nicoin of fee (tokenomics `Params.max_subsidy_per_fee`, docs/economics.md): capped
phases mint exactly the cap per nicoin, issuance stays exact across capped and uncapped phases, and the default cap
keeps paying for requests to oneself a loss for any weight share below half."""

from __future__ import annotations

import random
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from racenet.chain.modules import bank, tokenomics
from racenet.chain.modules.tokenomics import (
    PAPER_CAP,
    PHASE_ISSUANCE,
    PHASES,
    SUBSIDY_CAP,
    TRAINING_FUND_PERCENT,
    Issuance,
    Params,
    Ratio,
    effective_rate,
    exact_cap,
    fees_to_next_phase,
    issue_for_fee,
    phase_of,
    subsidy_per_fee,
)
from racenet.chain.store import Branch, CommittedStore
from tests.chain import GENESIS_TIME, key
from tests.test_tokenomics_chain import FakeRace, Held, Keepers, at, init


@pytest.fixture
def keepers(tmp_path: Path) -> Iterator[Keepers]:
    """tokenomics' keeper on a bare store, as tests/test_tokenomics_chain.py's keeper-level tests use it."""
    store = CommittedStore(tmp_path / "db")
    bank_keeper = bank.Keeper()
    keeper = tokenomics.Keeper(bank_keeper, FakeRace())
    keeper.use_rewards(Held(bank_keeper))
    yield keeper, bank_keeper, FakeRace(), Branch(store)
    store.close()


def test_only_caps_that_keep_issuance_exact_are_valid() -> None:
    assert [c for c in range(0, 12) if exact_cap(c)] == [1, 2, 3, 4, 6, 9]
    for cap in (0, 5, 7, 8, 10):
        with pytest.raises(ValueError, match="max_subsidy_per_fee"):
            Params(max_subsidy_per_fee=cap).validate()


def test_capped_phases_mint_the_cap_and_the_rest_keep_the_papers_rates() -> None:
    assert [subsidy_per_fee(k, 1) for k in (1, 2, 3)] == [Ratio(1, 1)] * 3
    assert [subsidy_per_fee(k, 1) for k in range(4, PHASES + 1)] == [subsidy_per_fee(k) for k in range(4, PHASES + 1)]
    assert subsidy_per_fee(1, PAPER_CAP) == Ratio(9, 1)
    assert effective_rate(1, SUBSIDY_CAP) == Ratio(1, 2)  # providers get 2x the fee, half of it minted
    assert issue_for_fee(Issuance(), 12_345, SUBSIDY_CAP) == Issuance(12_345, 0)


@pytest.mark.parametrize("cap", [1, 2, 3, 4, 6, 9])
def test_issuance_under_a_cap_is_exact_across_phases_however_fees_are_split(cap: int) -> None:
    rng = random.Random(cap)
    total = 0
    issuance = Issuance()
    while phase_of(issuance) <= 6:
        fee = rng.choice([1, 7, rng.randrange(1, PHASE_ISSUANCE), rng.randrange(PHASE_ISSUANCE, 4 * PHASE_ISSUANCE)])
        issuance = issue_for_fee(issuance, fee, cap)
        total += fee
        assert issuance == issue_for_fee(Issuance(), total, cap)
    exact = Fraction(0)  # the subsidy of `total` phase by phase, in exact rationals
    left, minted = Fraction(total), 0
    for phase in range(1, PHASES + 1):
        rate = subsidy_per_fee(phase, cap)
        fee_of_phase = Fraction(PHASE_ISSUANCE * rate.denominator, rate.numerator)
        if left < fee_of_phase:
            exact += left * Fraction(rate.numerator, rate.denominator)
            break
        exact, left, minted = exact + PHASE_ISSUANCE, left - fee_of_phase, minted + PHASE_ISSUANCE
    assert issuance.minted == int(exact)


@pytest.mark.parametrize("cap", [1, 3, 9])
def test_fees_to_next_phase_completes_the_phase_under_a_cap(cap: int) -> None:
    issuance = issue_for_fee(Issuance(), 10**15 + 3, cap)
    for _ in range(4):
        need = fees_to_next_phase(issuance, cap)
        assert phase_of(issue_for_fee(issuance, need - 1, cap)) == phase_of(issuance)
        issuance = issue_for_fee(issuance, need, cap)
        assert issuance.minted >= (phase_of(issuance) - 1) * PHASE_ISSUANCE


def test_the_default_cap_makes_wash_trading_a_loss_below_half_the_weight() -> None:
    """A wash trader with weight share p gets back p of fee plus subsidy, less the training fund's share: under the
    default cap that is below what it paid for any p < 1/2 (even with no training fund), under the paper's 9 it is
    above from p = 1/8 (docs/economics.md; `racenet sim --scenario wash` plays it on the chain)."""
    kept = Fraction(100 - TRAINING_FUND_PERCENT, 100)
    half = Fraction(1, 2)
    assert half * (1 + SUBSIDY_CAP) <= 1 and half * (1 + SUBSIDY_CAP) * kept < 1
    assert Fraction(1, 8) * (1 + PAPER_CAP) * kept == 1
    assert Fraction(1, 7) * (1 + PAPER_CAP) * kept > 1


def test_changing_the_cap_gives_up_the_fraction_owed_in_the_old_rate(keepers: Keepers) -> None:
    keeper, bank_keeper, _, branch = keepers
    init(keeper, bank_keeper, branch, Params(max_subsidy_per_fee=PAPER_CAP))
    ctx = at(branch, 1, GENESIS_TIME)
    keeper.issue_for_fee(ctx, key(9).public_key.address, PHASE_ISSUANCE // 9 + 1)  # into phase 2: rate 36/14
    owed = keeper.issuance.get(ctx)
    assert owed.owed != 0
    keeper.set_params(ctx, Params(max_subsidy_per_fee=PAPER_CAP, top_providers=5))
    assert keeper.issuance.get(ctx) == owed  # the cap unchanged: nothing given up
    keeper.set_params(ctx, Params())
    assert keeper.issuance.get(ctx) == Issuance(owed.minted, 0)
    minted = keeper.issue_for_fee(ctx, key(9).public_key.address, 1_000)
    assert minted == 1_000  # phase 2 under the default cap: 1 per nicoin
