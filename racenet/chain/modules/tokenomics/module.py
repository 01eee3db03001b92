"""tokenomics: the only minter of the core incentive, the training fund, and the fixed allocations' payouts
(whitepaper §9, Appendices E, F, K; docs/tokenomics.md).

- Fee → subsidy: verification calls `issue_for_fee` when a request finishes; the subsidy the schedule gives for its
  cost (at most `Params.max_subsidy_per_fee` per nicoin) is minted to `MINTER` and verification holds it beside
  the fee as the executor's reward of the cycle.
- Daily minimum: at the first block of a new block-time day, the day that ended is topped up to its minimum
  issuance (`issue_minimum`), held as rewards in proportion to that day's verified work: the fees of the requests
  each executor finished that day, or the Race weights if nobody finished one. Days without blocks issue nothing.
- Training fund: at settlement verification pays `training_share` of every released reward to `TRAINING_FUND`;
  only `grant` (called by governance) pays out of it. Its percentage changes only after year 5 (`set_params`).
- Additional provider reward: at each Race cycle start, what is due of the 120M (linear in block time over
  `provider_reward_days`) and not yet paid goes to the `top_providers` largest Race weights among providers with
  weight in each of the last `sustained_cycles` cycles, by weight. A provider that leaves loses its streak and the
  next sustained one takes its place at the next cycle start (the paper's dynamic replacement).
- Founders: their escrow vests linearly over `founders_vesting_days` from genesis (none before the cliff) and is
  paid to `Params.founders` at each day's first block.

Invariant: supply + burned = the genesis allocations + `Issuance.minted` (so nothing else mints) with minted ≤ 600M
and supply + burned ≤ 1B.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Protocol

from racenet.chain.authority import require_authority
from racenet.chain.collections import ADDRESS, Item, Record, UintItem, UintMap
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import (
    Context,
    HandlerTable,
    Invariant,
    InvariantBroken,
    Module,
    ModuleKeeper,
    QueryTable,
    TxContext,
    isolated,
)
from racenet.chain.modules.bank.types import Supply
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.modules.tokenomics.schedule import (
    ADDITIONAL_PROVIDER_REWARD,
    CORE_INCENTIVE,
    MAX_SUPPLY,
    PHASES,
    SECONDS_PER_DAY,
    Issuance,
    basis_points,
    day_of,
    effective_rate,
    fees_to_next_phase,
    issue_for_fee,
    issue_minimum,
    minimum_daily_issuance,
    phase_of,
    split_training_fund,
    training_share_is_fixed,
)
from racenet.chain.modules.tokenomics.types import (
    FOUNDERS_ACCOUNT,
    MINTER,
    PARAMS,
    PROVIDER_REWARD_ACCOUNT,
    STATUS,
    TRAINING_FUND,
    MsgUpdateParams,
    Params,
    Payouts,
    Status,
    Streak,
    Today,
    TokenomicsGenesis,
)
from racenet.chain.scalars import MAX_AMOUNT, Address
from racenet.crypto.address import encode_address

NAME = "tokenomics"


class BankKeeper(Protocol):
    """What tokenomics needs of bank: minting, its accounts' balances and transfers, and the supply."""

    def balance(self, ctx: Context, address: bytes) -> int: ...
    def mint(self, ctx: Context, recipient: bytes, amount: int) -> None: ...
    def send(self, ctx: Context, sender: bytes, recipient: bytes, amount: int) -> None: ...
    def query_supply(self, ctx: Context, _: None) -> Supply: ...


class RaceKeeper(Protocol):
    """What tokenomics needs of race: the cycle schedule and the weights."""

    def schedule(self, ctx: Context) -> Schedule: ...
    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]: ...


class HeldRewards(Protocol):
    """What tokenomics needs of verification: to hold minted coins as a node's reward of the current cycle."""

    def hold_reward(self, ctx: Context, payer: bytes, node: bytes, amount: int) -> None: ...


def proportional(amount: int, weights: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
    """Split `amount` by positive weights, in address order; the remainder of the floors goes to the first, so the
    parts add up to `amount` (nothing if no weight is positive)."""
    ranked = sorted((a, w) for a, w in weights if w > 0)
    total = sum(w for _, w in ranked)
    if not ranked or amount <= 0:
        return []
    parts = [amount * w // total for _, w in ranked]
    parts[0] += amount - sum(parts)
    return [(a, p) for (a, _), p in zip(ranked, parts, strict=True) if p]


class Keeper(ModuleKeeper):
    """The only reader and writer of tokenomics state, and the only minter after genesis."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    genesis_time = UintItem(b"genesis_time")
    issuance = Item(b"issuance", Record(Issuance), Issuance())
    today = Item(b"today", Record(Today), Today())
    work = UintMap(b"work/", ADDRESS)
    allocated = UintItem(b"allocated")
    payouts = Item(b"payouts", Record(Payouts), Payouts())
    streaks = UintMap(b"streak/", ADDRESS)
    next_cycle = UintItem(b"next_cycle")

    def __init__(self, bank: BankKeeper, race: RaceKeeper) -> None:
        self.bank = bank
        self.race = race
        self.rewards: HeldRewards | None = None

    def use_rewards(self, rewards: HeldRewards) -> None:
        """Wire verification, which holds minted coins as rewards until their cycle settles."""
        self.rewards = rewards

    def _rewards(self) -> HeldRewards:
        if self.rewards is None:
            raise ChainError(Code.INTERNAL, "tokenomics has no held rewards wired")
        return self.rewards

    def day(self, ctx: Context) -> int:
        """The block-time day of the block being run (0 = the genesis day)."""
        return day_of(ctx.block.time, int(self.genesis_time.get(ctx)))

    def _mint(self, ctx: Context, before: Issuance, after: Issuance) -> int:
        """Record the new issuance and mint what it added to `MINTER`; return that amount."""
        minted = after.minted - before.minted
        self.issuance.set(ctx, after)
        if minted:
            self.bank.mint(ctx, MINTER, minted)
        return minted

    def issue_for_fee(self, ctx: Context, executor: bytes, fee: int) -> int:
        """A request finished with cost `fee`: mint its subsidy to `MINTER` (the caller holds it as the executor's
        reward), count it in today's issuance and the fee as the executor's work of the day; return the subsidy."""
        before = self.issuance.get(ctx)
        cap = self.params.get(ctx).max_subsidy_per_fee
        minted = self._mint(ctx, before, issue_for_fee(before, int(fee), cap))  # plain ints: its products pass u64
        if minted:
            today = self.today.get(ctx)
            self.today.set(ctx, dataclasses.replace(today, issued=today.issued + minted))
        self.work.set(ctx, executor, min(int(self.work.get(ctx, executor)) + int(fee), MAX_AMOUNT))
        return minted

    def training_share(self, ctx: Context, pooled: int, released: int) -> int:
        """The training fund's part of `released`, given `pooled` released before it in the same settlement: the
        parts of one settlement add up to the fund's share of their sum, rounded down once."""
        percent = self.params.get(ctx).training_fund_percent
        return split_training_fund(pooled + released, percent)[0] - split_training_fund(pooled, percent)[0]

    def grant(self, ctx: Context, recipient: bytes, amount: int) -> None:
        """Pay a grant out of the training fund (governance calls this once a grant proposal passes)."""
        if amount <= 0:
            raise ChainError(Code.INVALID_MESSAGE, "a grant is a positive amount")
        self.bank.send(ctx, TRAINING_FUND, recipient, amount)
        ctx.emit("training_grant", recipient=encode_address(recipient), amount=str(amount))

    def set_params(self, ctx: Context, params: Params) -> None:
        """Replace the params (governance's update path); the training-fund percentage is fixed in years 1–5."""
        try:
            params.validate()
        except ValueError as e:
            raise ChainError(Code.INVALID_MESSAGE, f"tokenomics params: {e}") from e
        current = self.params.get(ctx)
        if params.training_fund_percent != current.training_fund_percent and training_share_is_fixed(self.day(ctx)):
            raise ChainError(Code.UNAUTHORIZED, "the training fund's percentage may change only after year 5")
        if params.max_subsidy_per_fee != current.max_subsidy_per_fee:  # owed is in the old rate's units: given up
            self.issuance.set(ctx, dataclasses.replace(self.issuance.get(ctx), owed=0))
        self.params.set(ctx, params)

    def begin_day(self, ctx: Context) -> None:
        """At the first block of a new day: top up the day that ended, vest the founders, start the new day."""
        today = self.today.get(ctx)
        day = self.day(ctx)
        if day <= today.day:
            return
        with isolated(ctx, NAME, f"minimum issuance of day {today.day}") as item:
            self._top_up(item, today)
        with isolated(ctx, NAME, f"founders' vesting on day {day}") as item:
            self._vest_founders(item, day)
        self.work.clear(ctx)
        self.today.set(ctx, Today(day, 0))

    def _top_up(self, ctx: Context, today: Today) -> None:
        """Mint the day's shortfall from its minimum and hold it by the day's work (else by Race weight)."""
        weights = [(a, int(w)) for a, w in self.work.items(ctx)] or self.race.all_weights(ctx)
        if not any(w > 0 for _, w in weights):
            return
        before = self.issuance.get(ctx)
        minted = self._mint(ctx, before, issue_minimum(before, today.day, today.issued))
        for node, share in proportional(minted, weights):
            self._rewards().hold_reward(ctx, MINTER, node, share)
        if minted:
            ctx.emit("minimum_issuance", day=str(today.day), minted=str(minted))

    def _vest_founders(self, ctx: Context, day: int) -> None:
        params = self.params.get(ctx)
        payouts = self.payouts.get(ctx)
        if not params.founders or day < params.founders_cliff_days:
            return
        vested = payouts.founders_allocation * min(day, params.founders_vesting_days) // params.founders_vesting_days
        pay = min(vested - payouts.founders, int(self.bank.balance(ctx, FOUNDERS_ACCOUNT)))
        if pay > 0:
            self.bank.send(ctx, FOUNDERS_ACCOUNT, params.founders, pay)
            self.payouts.set(ctx, dataclasses.replace(payouts, founders=payouts.founders + pay))
            ctx.emit("founders_vesting", day=str(day), paid=str(pay))

    def begin_cycle(self, ctx: Context) -> None:
        """At a Race cycle's first block: count the providers' streaks and pay the additional provider reward due."""
        schedule = self.race.schedule(ctx)
        cycle = schedule.cycle(ctx.block.height)
        if ctx.block.height != schedule.cycle_start(cycle) or cycle < self.next_cycle.get(ctx):
            return
        self.next_cycle.set(ctx, cycle + 1)
        weights = dict(self.race.all_weights(ctx))
        for address, _ in self.streaks.items(ctx):
            if weights.get(address, 0) <= 0:
                self.streaks.set(ctx, address, 0)
        for address, weight in weights.items():
            if weight > 0:
                self.streaks.set(ctx, address, self.streaks.get(ctx, address) + 1)
        with isolated(ctx, NAME, f"additional provider reward at cycle {cycle}") as item:
            self._pay_provider_reward(item, weights)

    def top_providers(self, ctx: Context, weights: dict[bytes, int]) -> list[tuple[bytes, int]]:
        """The `top_providers` largest weights among providers sustained for `sustained_cycles` (ties by address)."""
        params = self.params.get(ctx)
        enough = params.sustained_cycles
        sustained = [(a, w) for a, w in weights.items() if w > 0 and self.streaks.get(ctx, a) >= enough]
        return sorted(sustained, key=lambda aw: (-aw[1], aw[0]))[: params.top_providers]

    def _pay_provider_reward(self, ctx: Context, weights: dict[bytes, int]) -> None:
        top = self.top_providers(ctx, weights)
        if not top:
            return
        params = self.params.get(ctx)
        payouts = self.payouts.get(ctx)
        period = params.provider_reward_days * SECONDS_PER_DAY
        elapsed = min(max(ctx.block.time - int(self.genesis_time.get(ctx)), 0), period)
        due = ADDITIONAL_PROVIDER_REWARD * elapsed // period - payouts.provider_reward
        pay = min(due, int(self.bank.balance(ctx, PROVIDER_REWARD_ACCOUNT)))
        if pay <= 0:
            return
        for node, share in proportional(pay, top):
            self.bank.send(ctx, PROVIDER_REWARD_ACCOUNT, node, share)
        self.payouts.set(ctx, dataclasses.replace(payouts, provider_reward=payouts.provider_reward + pay))
        ctx.emit("provider_reward", paid=str(pay), providers=str(len(top)))

    def check_supply(self, ctx: Context) -> None:
        """supply + burned = allocations + core incentive minted; minted ≤ 600M; supply + burned ≤ 1B."""
        supply = self.bank.query_supply(ctx, None)
        created = int(supply.supply) + int(supply.burned)
        minted = self.issuance.get(ctx).minted
        allocated = int(self.allocated.get(ctx))
        if minted > CORE_INCENTIVE:
            raise InvariantBroken(f"core incentive minted {minted} exceeds {CORE_INCENTIVE}")
        if created != allocated + minted:
            raise InvariantBroken(f"supply + burned {created} != allocations {allocated} + core incentive {minted}")
        if created > MAX_SUPPLY:
            raise InvariantBroken(f"supply + burned {created} exceeds the maximum supply {MAX_SUPPLY}")
        if self.bank.balance(ctx, MINTER):
            raise InvariantBroken("newly minted coins were left in the minter account")

    def query_status(self, ctx: Context, _: None) -> Status:
        """Phase, subsidy rate, minted, fees to the next phase, today's minimum, the training fund and supply."""
        issuance = self.issuance.get(ctx)
        phase = phase_of(issuance)
        cap = self.params.get(ctx).max_subsidy_per_fee
        today = self.today.get(ctx)
        supply = self.bank.query_supply(ctx, None)
        return Status(
            phase=phase,
            subsidy_bps=basis_points(effective_rate(phase, cap)) if phase <= PHASES else 0,
            minted=issuance.minted,
            fees_to_next_phase=fees_to_next_phase(issuance, cap),
            day=today.day,
            minimum_today=minimum_daily_issuance(today.day),
            issued_today=today.issued,
            training_fund=self.bank.balance(ctx, TRAINING_FUND),
            training_fund_percent=self.params.get(ctx).training_fund_percent,
            supply=int(supply.supply),
            burned=int(supply.burned),
        )

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """tokenomics/UpdateParams: governance replaces the params (`set_params`' rules)."""
        require_authority(ctx, "change tokenomics params")
        self.set_params(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    def query_params(self, ctx: Context, _: None) -> Params:
        """The tokenomics parameters."""
        return self.params.get(ctx)


class TokenomicsModule(Module[Keeper, TokenomicsGenesis]):
    """Module wiring: governance's params update, genesis, the day and cycle hooks, queries and the supply
    invariant (training-fund grants are gov's `gov/TrainingGrant`, which calls `grant`)."""

    name = NAME
    genesis_type = TokenomicsGenesis
    handlers: ClassVar[HandlerTable] = {MsgUpdateParams: Keeper.handle_update_params}
    queries: ClassVar[QueryTable] = {STATUS: Keeper.query_status, PARAMS: Keeper.query_params}

    def init_genesis(self, ctx: Context, state: TokenomicsGenesis) -> None:
        """Params and state; day 0 is the chain's genesis time unless the state names one; what bank holds beyond
        the core incentive issued so far is the fixed allocations (at most the 400M that are not core incentive)."""
        k = self.keeper
        k.params.set(ctx, state.params)
        k.genesis_time.set(ctx, state.genesis_time or ctx.block.time)
        k.issuance.set(ctx, state.issuance)
        k.today.set(ctx, state.today)
        for streak in state.streaks:
            k.streaks.set(ctx, streak.address, streak.cycles)
        supply = k.bank.query_supply(ctx, None)
        allocated = int(supply.supply) + int(supply.burned) - state.issuance.minted
        if not 0 <= allocated <= MAX_SUPPLY - CORE_INCENTIVE:
            raise ValueError(
                f"genesis balances of {allocated} nicoin beyond the core incentive issued; at most "
                f"{MAX_SUPPLY - CORE_INCENTIVE} (the fixed allocations) may exist at genesis"
            )
        k.allocated.set(ctx, allocated)
        founders = state.payouts.founders_allocation or k.bank.balance(ctx, FOUNDERS_ACCOUNT)
        k.payouts.set(ctx, dataclasses.replace(state.payouts, founders_allocation=founders))

    def export_genesis(self, ctx: Context) -> TokenomicsGenesis:
        """Everything init_genesis loads (today's work is not exported: a restart begins a new day's count)."""
        k = self.keeper
        return TokenomicsGenesis(
            params=k.params.get(ctx),
            genesis_time=int(k.genesis_time.get(ctx)),
            issuance=k.issuance.get(ctx),
            today=k.today.get(ctx),
            payouts=k.payouts.get(ctx),
            streaks=tuple(Streak(Address(a), int(c)) for a, c in k.streaks.items(ctx)),
        )

    def begin_block(self, ctx: Context) -> None:
        """A new day's first block tops up the day that ended; a cycle's first block pays the provider reward."""
        self.keeper.begin_day(ctx)
        self.keeper.begin_cycle(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """supply: only tokenomics mints, within the core incentive and the maximum supply."""
        return {"supply": self.keeper.check_supply}
