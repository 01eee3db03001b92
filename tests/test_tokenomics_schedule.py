"""The money schedule (racenet/chain/modules/tokenomics/schedule.py) against the whitepaper's numbers (Appendices E,
F, K): the 12-phase table to the coin, driven by one fee per phase and by many random fees; the minimum issuance
per day; path independence and the 600M cap as properties, checked against an exact `Fraction` oracle."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from racenet.chain.modules.tokenomics import (
    ADDITIONAL_PROVIDER_REWARD,
    CORE_INCENTIVE,
    DAYS_PER_YEAR,
    FIRST_YEAR_MINIMUM_ICON,
    FOUNDERS,
    ICON,
    LIQUIDITY_POOL,
    MAX_SUPPLY,
    MINIMUM_ISSUANCE_YEARS,
    PHASE_ISSUANCE,
    PHASES,
    SECONDS_PER_DAY,
    Issuance,
    Ratio,
    basis_points,
    day_of,
    fees_to_next_phase,
    issue_for_fee,
    issue_minimum,
    minimum_daily_issuance,
    phase_of,
    split_training_fund,
    subsidy_per_fee,
    subsidy_rate,
    training_share_is_fixed,
)
from racenet.chain.scalars import MAX_AMOUNT

PAPER_TABLE = [
    # phase, subsidy (basis points), fees paid by developers (icon), total paid to hardware providers (icon)
    (1, 9000, 5_555_556, 55_555_556),
    (2, 7200, 19_444_444, 69_444_444),
    (3, 5760, 36_805_556, 86_805_556),
    (4, 4608, 58_506_944, 108_506_944),
    (5, 3686, 85_633_681, 135_633_681),
    (6, 2949, 119_542_101, 169_542_101),
    (7, 2359, 161_927_626, 211_927_626),
    (8, 1887, 214_909_532, 264_909_532),
    (9, 1510, 281_136_915, 331_136_915),
    (10, 1208, 363_921_144, 413_921_144),
    (11, 966, 467_401_430, 517_401_430),
    (12, 773, 596_751_788, 646_751_788),
]
ALL_FEES = 2_411_536_718 * ICON
"""More than the fees of all 12 phases (2,411,536,717.8 icon)."""


def icon_rounded(nicoin: int) -> int:
    """Whole icon, rounded half up, as the paper prints amounts."""
    return (2 * nicoin + ICON) // (2 * ICON)


SUBSIDIES = [Fraction(9, 10) * Fraction(4, 5) ** (k - 1) for k in range(1, PHASES + 1)]
"""The paper's s_k = 0.9 · 0.8^(k-1), for the oracle."""


def exact_subsidy(total_fees: int) -> Fraction:
    """The oracle: the subsidy minted for cumulative fees, from the paper's formulas in exact rationals."""
    issued, left = Fraction(0), Fraction(total_fees)
    for s in SUBSIDIES:
        fees_of_phase = PHASE_ISSUANCE * (1 - s) / s
        if left < fees_of_phase:
            return issued + left * s / (1 - s)
        issued, left = issued + PHASE_ISSUANCE, left - fees_of_phase
    return issued


def exact(issuance: Issuance) -> Fraction:
    """The exact issuance a state stands for: minted plus the owed fraction of a nicoin."""
    if phase_of(issuance) > PHASES:
        return Fraction(issuance.minted)
    return issuance.minted + Fraction(issuance.owed, subsidy_per_fee(phase_of(issuance)).denominator)


def pay_and_record(issuance: Issuance, paid: int, fee: int, boundaries: list[int]) -> Issuance:
    """Pay a fee, appending to `boundaries` the cumulative fees at which each phase it completes was completed."""
    after = issue_for_fee(issuance, fee)
    while phase_of(issuance) <= PHASES and fee >= fees_to_next_phase(issuance):
        completing = fees_to_next_phase(issuance)
        issuance, paid, fee = issue_for_fee(issuance, completing), paid + completing, fee - completing
        boundaries.append(paid)
    assert issue_for_fee(issuance, fee) == after
    return after


@st.composite
def issuances(draw: st.DrawFn) -> Issuance:
    """Any state the chain can reach: any minted amount, and a fraction owed below the phase's denominator."""
    minted = draw(st.integers(0, CORE_INCENTIVE))
    phase = minted // PHASE_ISSUANCE + 1
    owed = draw(st.integers(0, subsidy_per_fee(phase).denominator - 1)) if phase <= PHASES else 0
    return Issuance(minted, owed)


fees = st.integers(0, ALL_FEES)


def test_allocations_add_up_to_the_supply() -> None:
    assert CORE_INCENTIVE + ADDITIONAL_PROVIDER_REWARD + LIQUIDITY_POOL + FOUNDERS == MAX_SUPPLY
    assert PHASES * PHASE_ISSUANCE == CORE_INCENTIVE
    assert MAX_SUPPLY <= MAX_AMOUNT


def test_subsidy_rates_are_the_papers() -> None:
    assert [basis_points(subsidy_rate(k)) for k in range(1, PHASES + 1)] == [bp for _, bp, _, _ in PAPER_TABLE]
    assert subsidy_per_fee(1) == Ratio(9, 1)  # pay X, providers get 9X minted on top: 10X
    for k, paper in enumerate(SUBSIDIES, start=1):
        s, r = subsidy_rate(k), subsidy_per_fee(k)
        assert Fraction(s.numerator, s.denominator) == paper
        assert Fraction(r.numerator, r.denominator) == paper / (1 - paper)


def test_one_fee_per_phase_reproduces_the_papers_table() -> None:
    issuance = Issuance()
    for phase, _, paper_fees, paper_total in PAPER_TABLE:
        fee = fees_to_next_phase(issuance)
        assert phase_of(issue_for_fee(issuance, fee - 1)) == phase
        after = issue_for_fee(issuance, fee)
        minted = after.minted - issuance.minted
        assert phase_of(after) == phase + 1
        assert 0 <= after.minted - phase * PHASE_ISSUANCE < 9  # the fee's last nicoin overshoots by < 9 nicoin
        assert (icon_rounded(fee), icon_rounded(fee + minted)) == (paper_fees, paper_total)
        issuance = after
    assert issuance == Issuance(CORE_INCENTIVE, 0)
    assert fees_to_next_phase(issuance) == 0
    assert issue_for_fee(issuance, ALL_FEES) == issuance


def test_many_random_fees_reproduce_the_same_table_exactly() -> None:
    rng = random.Random(13)
    single: list[int] = []
    pay_and_record(Issuance(), 0, ALL_FEES, single)
    assert len(single) == PHASES
    issuance, paid, boundaries, count = Issuance(), 0, [0], 0
    while phase_of(issuance) <= PHASES:
        fee = rng.randrange(1, 10 ** rng.randrange(1, 18))  # 1 nicoin to 100M icon, log-uniform-ish
        issuance = pay_and_record(issuance, paid, fee, boundaries)
        paid, count = paid + fee, count + 1
        assert issuance == issue_for_fee(Issuance(), paid)
        assert exact(issuance) == exact_subsidy(paid)
        assert issuance.minted == exact_subsidy(paid) // 1 <= CORE_INCENTIVE
    assert count > 500 and boundaries[1:] == single
    per_phase = [b - a for a, b in itertools.pairwise(boundaries)]
    assert [icon_rounded(f) for f in per_phase] == [paper_fees for _, _, paper_fees, _ in PAPER_TABLE]
    assert [icon_rounded(f + PHASE_ISSUANCE) for f in per_phase] == [total for _, _, _, total in PAPER_TABLE]


def test_a_fee_crossing_several_phases_is_split_exactly() -> None:
    start = issue_for_fee(Issuance(), 3 * ICON + 7)
    fee = fees_to_next_phase(start) + 100_000_000 * ICON  # phases 1, 2 and 3 done, into phase 4
    after = issue_for_fee(start, fee)
    assert phase_of(after) == 4
    assert exact(after) == exact_subsidy(3 * ICON + 7 + fee)
    assert after.minted == exact_subsidy(3 * ICON + 7 + fee) // 1


@given(st.lists(fees, max_size=20))
def test_splitting_fees_never_changes_the_issuance(parts: list[int]) -> None:
    issuance = Issuance()
    for fee in parts:
        issuance = issue_for_fee(issuance, fee)
    assert issuance == issue_for_fee(Issuance(), sum(parts))


@given(issuances(), fees, fees)
def test_a_fee_in_two_parts_mints_what_it_mints_whole(issuance: Issuance, a: int, b: int) -> None:
    assert issue_for_fee(issue_for_fee(issuance, a), b) == issue_for_fee(issuance, a + b)


@given(st.integers(0, 2 * ALL_FEES))
def test_issuance_is_the_exact_subsidy_rounded_down(total_fees: int) -> None:
    issuance = issue_for_fee(Issuance(), total_fees)
    assert exact(issuance) == min(exact_subsidy(total_fees), CORE_INCENTIVE)
    assert issuance.minted == exact(issuance) // 1


@given(issuances())
def test_fees_to_next_phase_is_the_least_fee_that_completes_it(issuance: Issuance) -> None:
    fee = fees_to_next_phase(issuance)
    if phase_of(issuance) > PHASES:
        assert fee == 0
        return
    assert phase_of(issue_for_fee(issuance, fee)) == phase_of(issuance) + 1
    assert phase_of(issue_for_fee(issuance, fee - 1)) == phase_of(issuance)


@given(
    issuances(),
    st.lists(st.tuples(st.booleans(), st.integers(0, 10**20 * ICON), st.integers(0, 40 * DAYS_PER_YEAR))),
)
def test_fees_and_top_ups_never_issue_beyond_the_cap(issuance: Issuance, events: list[tuple[bool, int, int]]) -> None:
    for is_fee, amount, day in events:
        after = issue_for_fee(issuance, amount) if is_fee else issue_minimum(issuance, day, amount % (10**6 * ICON))
        assert issuance.minted <= after.minted <= CORE_INCENTIVE
        assert exact(issuance) <= exact(after)
        issuance = after


def test_minimum_issuance_per_day_is_the_papers() -> None:
    per_year = [136_986, 68_493, 34_247, 17_123]
    for year, icon in enumerate(per_year):
        first, last = year * DAYS_PER_YEAR, (year + 1) * DAYS_PER_YEAR - 1
        assert minimum_daily_issuance(first) == minimum_daily_issuance(last) == icon * ICON
    last_year = (MINIMUM_ISSUANCE_YEARS - 1) * DAYS_PER_YEAR
    assert minimum_daily_issuance(last_year) == ICON
    assert 2 * FIRST_YEAR_MINIMUM_ICON < DAYS_PER_YEAR << MINIMUM_ISSUANCE_YEARS  # from year 20 it rounds to 0
    assert minimum_daily_issuance(last_year + DAYS_PER_YEAR) == 0
    assert minimum_daily_issuance(MAX_AMOUNT // SECONDS_PER_DAY) == 0


def test_day_of_counts_whole_block_time_days_since_genesis() -> None:
    genesis = 1_700_000_000
    assert day_of(genesis, genesis) == day_of(genesis - 5, genesis) == 0
    assert day_of(genesis + SECONDS_PER_DAY - 1, genesis) == 0
    assert day_of(genesis + SECONDS_PER_DAY, genesis) == 1
    assert day_of(genesis + DAYS_PER_YEAR * SECONDS_PER_DAY, genesis) == DAYS_PER_YEAR


def test_with_no_demand_the_minimum_fills_about_two_phases() -> None:
    issuance = Issuance()
    for day in range(MINIMUM_ISSUANCE_YEARS * DAYS_PER_YEAR + 10):
        issuance = issue_minimum(issuance, day, 0)
        if day == DAYS_PER_YEAR - 1:
            assert (issuance.minted, phase_of(issuance)) == (49_999_890 * ICON, 1)
    assert issuance == Issuance(99_999_780 * ICON, 0)
    assert phase_of(issuance) == 2


def test_the_minimum_tops_up_only_a_shortfall() -> None:
    start = issue_for_fee(Issuance(), 1_000 * ICON + 3)
    assert issue_minimum(start, 0, 100_000 * ICON).minted - start.minted == 36_986 * ICON
    assert issue_minimum(start, 0, 136_986 * ICON) == start
    assert issue_minimum(start, 400, 10**9 * ICON) == start


def test_a_top_up_gives_up_the_owed_fraction_and_moves_the_phase() -> None:
    in_phase_2 = issue_for_fee(Issuance(), fees_to_next_phase(Issuance()) + 1)
    assert phase_of(in_phase_2) == 2 and in_phase_2.owed
    topped = issue_minimum(in_phase_2, 0, 0)
    assert topped == Issuance(in_phase_2.minted + 136_986 * ICON, 0)
    near_end = Issuance(2 * PHASE_ISSUANCE - 10 * ICON, 0)
    crossed = issue_minimum(near_end, DAYS_PER_YEAR, 0)
    assert phase_of(crossed) == 3
    fee = 1_000 * ICON + 1
    assert issue_for_fee(crossed, fee).minted - crossed.minted == fee * 576 // 424  # s/(1-s) of phase 3


def test_the_minimum_stops_at_the_cap() -> None:
    near_cap = Issuance(CORE_INCENTIVE - 5 * ICON, 17)
    capped = issue_minimum(near_cap, 0, 0)
    assert capped == Issuance(CORE_INCENTIVE, 0)
    assert issue_minimum(capped, 0, 0) == capped
    assert issue_for_fee(capped, ICON) == capped


def test_training_fund_takes_its_share_rounded_down() -> None:
    assert split_training_fund(10 * ICON) == (2 * ICON, 8 * ICON)
    assert split_training_fund(7) == (1, 6)
    assert split_training_fund(4) == (0, 4)
    assert split_training_fund(10, 35) == (3, 7)
    assert training_share_is_fixed(5 * DAYS_PER_YEAR - 1)
    assert not training_share_is_fixed(5 * DAYS_PER_YEAR)


@given(st.integers(0, MAX_AMOUNT), st.integers(0, 100))
def test_training_fund_split_adds_up(revenue: int, percent: int) -> None:
    fund, providers = split_training_fund(revenue, percent)
    assert fund + providers == revenue
    assert 0 <= Fraction(revenue * percent, 100) - fund < 1
