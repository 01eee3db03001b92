"""tokenomics accounts, params, records, genesis state and queries (whitepaper §9, Appendices E, F, K).

Module accounts are bank balances at addresses no key owns (`module_address`): the training fund, the minter
(where new core-incentive coins appear for one step before they join a held reward), the additional provider
reward, the provider liquidity pool and the founders' vesting escrow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from racenet.chain.authority import AuthorityMsg, check_params
from racenet.chain.module import GenesisState
from racenet.chain.modules.bank.types import Balance
from racenet.chain.modules.tokenomics.schedule import (
    ADDITIONAL_PROVIDER_REWARD,
    CORE_INCENTIVE,
    DAYS_PER_YEAR,
    FOUNDERS,
    LIQUIDITY_POOL,
    SUBSIDY_CAP,
    TRAINING_FUND_PERCENT,
    Issuance,
    exact_cap,
)
from racenet.chain.query import NO_ARG, query
from racenet.chain.scalars import Address, Amount
from racenet.crypto.address import module_address

TRAINING_FUND = module_address("training_fund")
"""20% of the released inference revenue; paid out only by `Keeper.grant` (governance)."""
MINTER = module_address("tokenomics")
"""Where tokenomics mints core-incentive coins; they move on to a held reward in the same step (empty between)."""
PROVIDER_REWARD_ACCOUNT = module_address("provider_reward")
"""The 120M additional provider reward, paid over `Params.provider_reward_days` to the top sustained providers."""
LIQUIDITY_POOL_ACCOUNT = module_address("liquidity_pool")
"""The 120M provider liquidity pool, held here at genesis for the `pool` module to sell."""
FOUNDERS_ACCOUNT = module_address("founders")
"""The founders' 160M (less documented devnet grants), vesting to `Params.founders` by day."""


@dataclass(frozen=True, kw_only=True)
class Params:
    """tokenomics parameters.

    - `training_fund_percent`: the share of released revenue that goes to the training fund (fixed in years 1–5).
    - `top_providers`, `sustained_cycles`, `provider_reward_days`: the additional provider reward goes to the
      `top_providers` largest Race weights among providers that held weight in each of the last `sustained_cycles`
      cycles, in proportion to their weight, at each cycle start; due linearly over `provider_reward_days` days.
    - `founders`, `founders_cliff_days`, `founders_vesting_days`: the founders' escrow vests linearly over
      `founders_vesting_days` days from genesis, none before the cliff; paid daily to `founders` (none while empty).
    - `max_subsidy_per_fee`: the most nicoin a fee mints per nicoin (9 leaves the paper's phases uncapped; 1, the
      default, keeps paying for requests to oneself a loss at any weight share below half: docs/economics.md).
    """

    training_fund_percent: int = TRAINING_FUND_PERCENT
    max_subsidy_per_fee: int = SUBSIDY_CAP
    top_providers: int = 10
    sustained_cycles: int = 3
    provider_reward_days: int = 4 * DAYS_PER_YEAR
    founders: Address = b""
    founders_cliff_days: int = DAYS_PER_YEAR
    founders_vesting_days: int = 4 * DAYS_PER_YEAR

    def validate(self) -> None:
        """A percentage, at least one provider and cycle, positive periods, a cliff within the vesting."""
        if not 0 <= self.training_fund_percent <= 100:
            raise ValueError(f"training_fund_percent is 0 to 100, not {self.training_fund_percent}")
        if self.top_providers < 1 or self.sustained_cycles < 1:
            raise ValueError("top_providers and sustained_cycles are at least 1")
        if self.provider_reward_days < 1 or self.founders_vesting_days < 1:
            raise ValueError("provider_reward_days and founders_vesting_days are at least 1")
        if not 0 <= self.founders_cliff_days <= self.founders_vesting_days:
            raise ValueError("founders_cliff_days is 0 to founders_vesting_days")
        if not exact_cap(self.max_subsidy_per_fee):
            raise ValueError("max_subsidy_per_fee is one of 1, 2, 3, 4, 6 and 9 (the others would round issuance)")
        if self.founders and len(self.founders) != 20:
            raise ValueError("founders is a 20-byte address or empty")


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace tokenomics' params; accepted only from the governance authority (a passed proposal), and the
    training fund's percentage only after year 5."""

    TYPE: ClassVar[str] = "tokenomics/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True)
class Today:
    """The block-time day of the last block and the fee-driven subsidy minted in it (nicoin)."""

    day: int = 0
    issued: int = 0


@dataclass(frozen=True)
class Payouts:
    """What the fixed allocations have paid out so far (nicoin), and the founders' escrow at genesis."""

    provider_reward: int = 0
    founders: int = 0
    founders_allocation: int = 0


@dataclass(frozen=True)
class Streak:
    """A provider's consecutive cycles with Race weight, counted at each cycle start."""

    address: Address
    cycles: int


@dataclass(frozen=True)
class TokenomicsGenesis(GenesisState):
    """Params, the block time of day 0 (0: the chain's genesis time), the issuance so far, today's record, the
    payouts and the providers' streaks. The fixed allocations themselves are bank balances (`allocations`)."""

    params: Params = Params()
    genesis_time: int = 0
    issuance: Issuance = field(default_factory=Issuance)
    today: Today = Today()
    payouts: Payouts = Payouts()
    streaks: tuple[Streak, ...] = ()

    def validate(self) -> None:
        """Params valid; the issuance within the core incentive; one streak per address."""
        self.params.validate()
        if self.issuance.minted > CORE_INCENTIVE:
            raise ValueError("issuance.minted exceeds the core incentive")
        if len({s.address for s in self.streaks}) != len(self.streaks):
            raise ValueError("streaks: an address is listed twice")


@dataclass(frozen=True)
class Status:
    """The tokenomics at a glance (nicoin unless said): the phase (13 once the core incentive is all issued), its
    subsidy in basis points (0 then), core incentive minted, the fee that would complete the phase, today's
    minimum issuance and what was minted today, the training fund's balance and the supply."""

    phase: int
    subsidy_bps: int
    minted: int
    fees_to_next_phase: int
    day: int
    minimum_today: int
    issued_today: int
    training_fund: int
    training_fund_percent: int
    supply: int
    burned: int


def allocations(granted: int = 0) -> tuple[Balance, ...]:
    """The genesis balances of Appendix E: the additional provider reward and the liquidity pool in full, and the
    founders' 160M less `granted` nicoin of documented genesis grants (a devnet's faucet, node accounts and dummy
    pool), which the genesis lists itself. The core incentive is not pre-minted: tokenomics mints it."""
    if not 0 <= granted <= FOUNDERS:
        raise ValueError(f"genesis grants of {granted} nicoin exceed the founders' allocation of {FOUNDERS}")
    return (
        Balance(Address(PROVIDER_REWARD_ACCOUNT), Amount(ADDITIONAL_PROVIDER_REWARD)),
        Balance(Address(LIQUIDITY_POOL_ACCOUNT), Amount(LIQUIDITY_POOL)),
        Balance(Address(FOUNDERS_ACCOUNT), Amount(FOUNDERS - granted)),
    )


STATUS = query("tokenomics/status", NO_ARG, Status)
PARAMS = query("tokenomics/params", NO_ARG, Params)
