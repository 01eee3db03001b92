"""The money schedule of whitepaper §9 and Appendices E, F and K, as pure integer functions (docs/tokenomics.md).

Amounts are nicoin. The 600M core incentive is issued in 12 phases of 50M icon. In phase k the subsidy is
s_k = 0.9 · 0.8^(k-1) of what providers receive, so a fee F mints F · s_k / (1 - s_k) and the phase ends once its
50M are out (the Proportional Coin Issuance Model, Appendix F). A cap bounds s_k / (1 - s_k) (tokenomics
`Params.max_subsidy_per_fee`, 1 by default: phases 1 to 3 mint 1 per nicoin of fee, not 9, 2.57 and 1.36), since
an uncapped phase 1 lets a provider with an eighth of the Race weight profit from paying for requests to itself
(docs/economics.md). A day whose issuance falls short of the minimum independent issuance (5% of the supply in
year 1, halving yearly, ÷ 365) is topped up to it. Both come out of the phases and stop at the 600M. 20% of
inference revenue goes to the training fund (Appendix K).

The issuance so far is kept exactly: the nicoin minted plus the fraction of a nicoin a fee has earned but not yet
minted. A fee advances it by the exact rational subsidy and mints its floor, so splitting a fee into parts (or
joining fees) never changes what is minted, and nothing is minted that the exact schedule has not earned.
"""

from __future__ import annotations

from dataclasses import dataclass

from racenet.chain.modules.bank.denom import NICOIN_PER

ICON = NICOIN_PER["icon"]

MAX_SUPPLY = 1_000_000_000 * ICON
CORE_INCENTIVE = 600_000_000 * ICON
"""Minted to providers by the phases and the minimum issuance, never more."""
ADDITIONAL_PROVIDER_REWARD = 120_000_000 * ICON
LIQUIDITY_POOL = 120_000_000 * ICON
FOUNDERS = 160_000_000 * ICON

PHASES = 12
PHASE_ISSUANCE = 50_000_000 * ICON
PAPER_CAP = 9
"""A cap of 9 nicoin of subsidy per nicoin of fee caps no phase: the paper's schedule."""
SUBSIDY_CAP = 1
"""The default cap on the subsidy per nicoin of fee (docs/economics.md): a provider that pays for requests to
itself recovers at most its weight share p of fee plus subsidy, p · (1 + cap) · (1 - training share), below what
it paid for any p < 1/2 whatever the training share. The paper's 9 makes that pay from p = 1/8."""

SECONDS_PER_DAY = 86_400
DAYS_PER_YEAR = 365
FIRST_YEAR_MINIMUM_ICON = 50_000_000
"""The minimum independent issuance of year 1 in icon: 5% of the supply."""
MINIMUM_ISSUANCE_YEARS = 19
"""Years with a daily minimum: in year 20, 50M / 2^19 / 365 = 0.26 icon rounds to none."""

TRAINING_FUND_PERCENT = 20
TRAINING_FUND_FIXED_YEARS = 5
"""Governance may change the training fund's percentage only after year 5."""


@dataclass(frozen=True)
class Ratio:
    """An exact rational `numerator / denominator` (the chain has no floats)."""

    numerator: int
    denominator: int


@dataclass(frozen=True)
class Issuance:
    """The core incentive issued so far: `minted` nicoin, plus `owed` / subsidy_per_fee(phase).denominator nicoin a
    fee has earned but that is below one nicoin, so that the next fees of the phase carry it on exactly."""

    minted: int = 0
    owed: int = 0


def subsidy_rate(phase: int) -> Ratio:
    """s_k = 0.9 · 0.8^(k-1): the share of what providers receive in phase k that is newly minted."""
    return Ratio(9 * 4 ** (phase - 1), 10 * 5 ** (phase - 1))


def subsidy_per_fee(phase: int, cap: int = PAPER_CAP) -> Ratio:
    """s_k / (1 - s_k): the nicoin minted per nicoin of fee in phase k (9 in phase 1: pay X, providers get 10X),
    at most `cap` (a capped phase mints exactly `cap` per nicoin of fee)."""
    s = subsidy_rate(phase)
    numerator, denominator = s.numerator, s.denominator - s.numerator
    return Ratio(cap, 1) if numerator > cap * denominator else Ratio(numerator, denominator)


def exact_cap(cap: int) -> bool:
    """Whether issuance stays exact under `cap` (1 to 9): the first phase it leaves uncapped has a rate numerator
    that `cap` divides, so the fee carried into that phase converts without rounding (1, 2, 3, 4, 6 and 9 do)."""
    if not 1 <= cap <= PAPER_CAP:
        return False
    for phase in range(1, PHASES + 1):
        rate = subsidy_per_fee(phase)
        if rate.numerator <= cap * rate.denominator:
            return rate.numerator % cap == 0
    return True


def effective_rate(phase: int, cap: int = PAPER_CAP) -> Ratio:
    """The share of what providers receive in phase k that is newly minted, under `cap`: m / (1 + m)."""
    rate = subsidy_per_fee(phase, cap)
    return Ratio(rate.numerator, rate.numerator + rate.denominator)


def basis_points(ratio: Ratio) -> int:
    """A ratio in hundredths of a percent, rounded half up, as the paper prints rates (90.00% … 7.73%)."""
    return (20_000 * ratio.numerator + ratio.denominator) // (2 * ratio.denominator)


def phase_of(issuance: Issuance) -> int:
    """The phase that the next fee mints in: 1 to 12, or 13 once the core incentive is all issued."""
    return issuance.minted // PHASE_ISSUANCE + 1


def issue_for_fee(issuance: Issuance, fee: int, cap: int = PAPER_CAP) -> Issuance:
    """The issuance after a fee: fee · s/(1 - s) (at most `cap` per nicoin) at the current phase's rate, the part of
    the fee beyond a phase's end at the next phase's rate (split exactly), floored to whole nicoin, and nothing
    beyond the core incentive.

    With the rate a_k / b_k, `earned` is b_k × the subsidy not yet minted: owed + fee · a_k. What is left past the
    phase's end, `excess`, is b_k × subsidy for a fee of excess / a_k; at the next phase that fee earns
    (excess / a_k) · a_(k+1): 4 · excess between the paper's phases (a_(k+1) = 4 · a_k), excess between capped
    ones, and a whole multiple of it into the first uncapped phase (`exact_cap`).
    """
    minted, phase = issuance.minted, phase_of(issuance)
    if phase > PHASES:
        return issuance
    rate = subsidy_per_fee(phase, cap)
    earned = issuance.owed + fee * rate.numerator
    room = (phase * PHASE_ISSUANCE - minted) * rate.denominator
    while earned >= room:
        minted, phase = phase * PHASE_ISSUANCE, phase + 1
        if phase > PHASES:
            return Issuance(CORE_INCENTIVE, 0)
        following = subsidy_per_fee(phase, cap)
        earned, room = (earned - room) * following.numerator // rate.numerator, PHASE_ISSUANCE * following.denominator
        rate = following
    return Issuance(minted + earned // rate.denominator, earned % rate.denominator)


def fees_to_next_phase(issuance: Issuance, cap: int = PAPER_CAP) -> int:
    """The smallest fee (nicoin) that completes the current phase; 0 once the core incentive is all issued."""
    phase = phase_of(issuance)
    if phase > PHASES:
        return 0
    rate = subsidy_per_fee(phase, cap)
    room = (phase * PHASE_ISSUANCE - issuance.minted) * rate.denominator - issuance.owed
    return -(-room // rate.numerator)


def day_of(block_time: int, genesis_time: int) -> int:
    """The block-time day (0 = the genesis day) a block belongs to: whole days of 86,400 s since genesis."""
    return max(block_time - genesis_time, 0) // SECONDS_PER_DAY


def minimum_daily_issuance(day: int) -> int:
    """The minimum issuance (nicoin) of a day: year y's 5% / 2^(y-1) of the supply ÷ 365, rounded to the nearest
    whole icon as the paper does (50,000,000 ÷ 365 = 136,986; 12,500,000 ÷ 365 = 34,246.58 → 34,247). Years are
    365 block-time days. 73 (a factor of 365) does not divide 10^8, so no quotient is an exact half: no ties."""
    year = day // DAYS_PER_YEAR
    if year >= MINIMUM_ISSUANCE_YEARS:
        return 0
    days = DAYS_PER_YEAR << year
    return (2 * FIRST_YEAR_MINIMUM_ICON + days) // (2 * days) * ICON


def issue_minimum(issuance: Issuance, day: int, issued_today: int) -> Issuance:
    """The issuance after topping a day up to its minimum, given the fee-driven subsidy `issued_today` minted on it.

    The top-up is issuance like any other: it counts against the 600M, moves the phases, and stops at the cap.
    It is whole nicoin, so the fraction of a nicoin a fee had earned (`owed`) is given up: one denominator per
    phase then keeps the state exact, and the rounding stays down.
    """
    top_up = min(max(minimum_daily_issuance(day) - issued_today, 0), CORE_INCENTIVE - issuance.minted)
    return Issuance(issuance.minted + top_up, 0) if top_up else issuance


def split_training_fund(revenue: int, percent: int = TRAINING_FUND_PERCENT) -> tuple[int, int]:
    """(training fund, providers) of an inference revenue (fees and minted rewards): the fund's `percent` rounded
    down, the remainder to the providers, so the parts add up to `revenue` and rounding never favours the fund."""
    fund = revenue * percent // 100
    return fund, revenue - fund


def training_share_is_fixed(day: int) -> bool:
    """Whether the training fund's percentage is still locked (years 1 to 5), i.e. governance may not change it."""
    return day < TRAINING_FUND_FIXED_YEARS * DAYS_PER_YEAR
