"""The tokenomics module on the in-process chain (docs/tokenomics.md): the 12 phases driven by fees inside real blocks
reproduce the paper's table to the coin; the daily minimum by block time; the training fund's 20%; the fixed
allocations' payouts; and the supply invariant after every block (tests.chain.Chain checks every invariant)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.collections import ADDRESS, UintMap
from racenet.chain.errors import ChainError, Code
from racenet.chain.genesis import Genesis
from racenet.chain.jsonform import from_json
from racenet.chain.module import BlockEnv, Context, ModuleKeeper, isolated
from racenet.chain.modules import bank, tokenomics
from racenet.chain.modules.bank import Balance, BankGenesis
from racenet.chain.modules.inference import ModelEntry, MsgFinishRequest
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.modules.tokenomics import (
    CORE_INCENTIVE,
    FOUNDERS,
    FOUNDERS_ACCOUNT,
    ICON,
    LIQUIDITY_POOL_ACCOUNT,
    MAX_SUPPLY,
    MINTER,
    PAPER_CAP,
    PHASE_ISSUANCE,
    PROVIDER_REWARD_ACCOUNT,
    SECONDS_PER_DAY,
    SUBSIDY_CAP,
    TRAINING_FUND,
    Issuance,
    Params,
    Status,
    TokenomicsGenesis,
    allocations,
    issue_for_fee,
    minimum_daily_issuance,
    split_training_fund,
)
from racenet.chain.scalars import MAX_AMOUNT, Amount
from racenet.chain.store import Branch, CommittedStore
from racenet.chain.types import FinalizeBlockResult
from tests.chain import CHAIN_ID, GENESIS_TIME, Chain, balances, genesis_for, key
from tests.test_inference_chain import DEV, MODEL, NODES, TA, InferenceChain
from tests.test_inference_chain import genesis as inference_genesis
from tests.test_tokenomics_schedule import PAPER_TABLE
from tests.test_verification_chain import ANSWER, VerificationChain

EXECUTOR = key(7).public_key.address
DAY = SECONDS_PER_DAY
PAPER_FEES_NICOIN = [
    5_555_555_555_555_556,
    19_444_444_444_444_444,
    36_805_555_555_555_556,
    58_506_944_444_444_444,
    85_633_680_555_555_556,
    119_542_100_694_444_444,
    161_927_625_868_055_556,
    214_909_532_335_069_444,
    281_136_915_418_836_806,
    363_921_144_273_546_007,
    467_401_430_341_932_509,
    596_751_787_927_415_636,
]
"""docs/tokenomics.md's exact per-phase fees."""

BlockWork = Callable[[Context], None]


class FeeChain(Chain):
    """A chain whose tokenomics begin-block also runs queued work (fees reported as a Finish reports them)."""

    queue: list[BlockWork]

    def hook(self) -> None:
        """Run the queue inside each block, after tokenomics' own begin-block."""
        self.queue = []
        module = self.app.tokenomics
        original = module.begin_block

        def begin_block(ctx: Context) -> None:
            original(ctx)
            while self.queue:
                self.queue.pop(0)(ctx)

        module.begin_block = begin_block  # type: ignore[method-assign]

    def fee(self, amount: int, executor: bytes = EXECUTOR) -> None:
        """Queue a finished request's fee: what `verification.on_finish` does with the subsidy it mints."""

        def work(ctx: Context) -> None:
            with isolated(ctx, "verification", "subsidy") as item:
                minted = self.app.tokenomics.keeper.issue_for_fee(item, executor, amount)
                self.app.verification.keeper.hold_reward(item, MINTER, executor, minted)

        self.queue.append(work)

    def at(self, time: int, *txs: bytes) -> FinalizeBlockResult:
        """A block at block time `time`, invariants checked after it."""
        result = self.driver.execute(self.driver.decide(txs, time), check=False)
        self.app.check_invariants()
        return result

    def status(self) -> Status:
        """The `tokenomics/status` query, through the App's query path."""
        answer = self.app.query("tokenomics/status", b"")
        assert answer.code == 0, answer.log
        return from_json(Status, json.loads(answer.value))

    def issuance(self) -> Issuance:
        return self.app.tokenomics.keeper.issuance.get(self.app.read_context())


def fee_chain(tmp_path: Path, genesis: Genesis) -> FeeChain:
    c = Chain.start(tmp_path, genesis)
    chain = FeeChain(c.app, c.driver)
    chain.hook()
    return chain


def paper(genesis: Genesis) -> Genesis:
    """`genesis` with the paper's uncapped subsidy (`max_subsidy_per_fee` 9), whose table these tests reproduce."""
    params = Params(max_subsidy_per_fee=PAPER_CAP)
    state = dataclasses.replace(genesis.app_state, tokenomics=TokenomicsGenesis(params=params))
    return dataclasses.replace(genesis, app_state=state)


@pytest.fixture
def chain(tmp_path: Path) -> FeeChain:
    return fee_chain(tmp_path, paper(genesis_for([key(1), key(2)])))


def test_fees_drive_the_chain_through_all_12_phases_and_reproduce_the_papers_table(chain: FeeChain) -> None:
    cumulative = [0]
    for phase, bps, fees_icon, providers_icon in PAPER_TABLE:
        status = chain.status()
        assert (status.phase, status.subsidy_bps) == (phase, bps)
        fee = status.fees_to_next_phase
        chain.fee(fee)
        chain.block()
        cumulative.append(cumulative[-1] + fee)
        phase_fees = cumulative[-1] - cumulative[-2]
        assert phase_fees == PAPER_FEES_NICOIN[phase - 1]
        assert (phase_fees + ICON // 2) // ICON == fees_icon
        assert (PHASE_ISSUANCE + phase_fees + ICON // 2) // ICON == providers_icon
        minted = chain.issuance().minted
        assert phase * PHASE_ISSUANCE <= minted <= min(phase * PHASE_ISSUANCE + 8, CORE_INCENTIVE)
    status = chain.status()
    assert (status.phase, status.subsidy_bps, status.minted, status.fees_to_next_phase) == (13, 0, CORE_INCENTIVE, 0)
    chain.fee(10**18)
    chain.block()
    assert chain.issuance() == Issuance(CORE_INCENTIVE, 0)  # the cap: nothing more, ever
    supply = chain.app.bank.keeper.query_supply(chain.app.read_context(), None)
    assert supply.supply + supply.burned <= MAX_SUPPLY


def test_random_fees_inside_blocks_mint_what_their_sum_mints(chain: FeeChain) -> None:
    """Splitting fees over blocks and requests never mints more (or less) than one fee of their sum."""
    import random

    rng = random.Random(13)
    total = 0
    for _ in range(12):
        for _ in range(rng.randrange(1, 6)):
            fee = rng.choice([1, 7, 10**6, rng.randrange(1, 10**17)])
            chain.fee(fee)
            total += fee
        chain.block()
        assert chain.issuance() == issue_for_fee(Issuance(), total)


def test_overflow_sized_fees_mint_to_the_cap_and_never_break_a_block(chain: FeeChain) -> None:
    for fee in (MAX_AMOUNT, MAX_AMOUNT + 1, 2**80):
        chain.fee(fee)
        result = chain.block()
        assert not [e for e in result.events if e.type == "hook_failed"]
    assert chain.issuance() == issue_for_fee(Issuance(), MAX_AMOUNT + MAX_AMOUNT + 1 + 2**80)
    assert chain.issuance().minted == CORE_INCENTIVE
    work = chain.app.tokenomics.keeper.work.get(chain.app.read_context(), EXECUTOR)
    assert work == MAX_AMOUNT  # the day's work saturates instead of overflowing


def test_minimum_issuance_per_day_with_zero_demand_by_block_time(tmp_path: Path) -> None:
    chain = fee_chain(tmp_path, inference_genesis())  # weights 10, 20, 30
    minted = [chain.issuance().minted]
    expected = []
    for day, top_up_icon in [(1, 136_986), (365, 136_986), (366, 68_493), (731, 68_493), (732, 34_247)]:
        chain.at(GENESIS_TIME + day * DAY)  # tops up the day of the block before
        minted.append(chain.issuance().minted)
        expected.append(top_up_icon * ICON)
    assert [b - a for a, b in itertools.pairwise(minted)] == expected
    chain.at(GENESIS_TIME + 732 * DAY + 10)  # the same day: nothing
    chain.at(GENESIS_TIME + 900 * DAY)  # days 733-899 had no block: only day 732 is topped up
    assert chain.issuance().minted - minted[-1] == 34_247 * ICON
    held = {
        k.public_key.address: chain.app.inference.keeper.pending_reward(chain.app.read_context(), k.public_key.address)
        for k in NODES
    }
    weights = [10, 20, 30]
    total = sum(held.values())
    assert total == chain.issuance().minted  # no inference: all of it held by Race weight
    for k, w in zip(NODES, weights, strict=True):
        assert abs(held[k.public_key.address] - total * w // 60) <= 1


def test_fee_driven_subsidy_counts_toward_the_day_and_the_top_up_follows_the_days_work(tmp_path: Path) -> None:
    chain = fee_chain(tmp_path, inference_genesis())  # weights 10, 20, 30
    fee = 1_000 * ICON  # mints 9,000 icon in phase 1: short of 136,986
    chain.fee(fee)
    chain.at(GENESIS_TIME + 10)
    assert chain.status().issued_today == fee  # the default cap: 1 nicoin of subsidy per nicoin of fee
    chain.at(GENESIS_TIME + DAY)
    assert chain.issuance().minted == 136_986 * ICON  # topped up to the minimum, no more
    pending = chain.app.inference.keeper.pending_reward(chain.app.read_context(), EXECUTOR)
    assert pending == 136_986 * ICON  # the only verified work of the day: all of the day's issuance
    chain.fee(200_000 * ICON)  # 200,000 icon of subsidy on day 1: above its minimum
    chain.at(GENESIS_TIME + DAY + 10)
    before = chain.issuance().minted
    chain.at(GENESIS_TIME + 2 * DAY)
    assert chain.issuance().minted == before  # nothing to top up


def test_the_training_fund_gets_exactly_20_percent_of_released_revenue(tmp_path: Path) -> None:
    from tests.test_verification_chain import genesis as verification_genesis

    genesis = verification_genesis()
    genesis = dataclasses.replace(
        genesis, app_state=dataclasses.replace(genesis.app_state, tokenomics=TokenomicsGenesis())
    )
    c = Chain.start(tmp_path, genesis)
    chain = VerificationChain(c.app, c.driver)
    chain.until_beacon()
    served = chain.serve_many(range(1, 9))
    assert served
    keeper = chain.app.verification.keeper
    ctx = chain.app.read_context
    schedule = chain.app.race.keeper.schedule(ctx())
    params = keeper.params.get(ctx())
    settle_at = schedule.cycle_start(schedule.cycle(chain.app.height) + 1) + params.check_blocks + params.dispute_blocks
    released, funded = 0, 0
    while chain.app.height < settle_at:
        for event in chain.decided_block().events:
            attributes = dict(event.attributes)
            if event.type == "verification_release":
                released += int(attributes["released"])
                funded += int(attributes["training_fund"])
    assert released > 0
    assert chain.balance(TRAINING_FUND) == funded == split_training_fund(released)[0] == released * 20 // 100
    answer = json.loads(chain.app.query("tokenomics/status", b"").value)
    assert from_json(Status, answer).training_fund == funded


def test_a_developer_paying_itself_mints_only_the_schedule(tmp_path: Path) -> None:
    """A provider that sends requests to the network and serves them itself pays the fee to itself: the subsidy is
    the schedule's for the fee, whoever pays it, and splitting it into many requests mints nothing extra."""
    c = Chain.start(tmp_path, inference_genesis())
    chain = InferenceChain(c.app, c.driver)
    chain.until_beacon()
    dealer = NODES[2]  # weight 30 of 60: routed to itself about half the time
    costs = 0
    for n in range(1, 13):
        start = chain.start_msg(n, max_tokens=10, developer=dealer)
        assert chain.run(TA, start)[0] == 0
        executor = chain.request(start.request_id).executor
        finish = MsgFinishRequest(request_id=start.request_id, completion_tokens=n % 10, response_hash=ANSWER)
        assert chain.run(chain.node(executor), finish) == (0, "")
        receipt = chain.app.inference.keeper.receipts.get(chain.app.read_context(), start.request_id)
        assert receipt is not None
        costs += int(receipt.cost)
    issuance = chain.app.tokenomics.keeper.issuance.get(chain.app.read_context())
    assert issuance == issue_for_fee(Issuance(), costs, SUBSIDY_CAP)
    assert issuance.minted == costs  # phase 1 under the default cap: exactly 1x, never a nicoin more


def test_a_huge_real_fee_crosses_phases_in_one_finish(tmp_path: Path) -> None:
    """One Finish worth 120M icon crosses 3 phases at once: split exactly, held beside the fee, within the cap."""
    units = 500_000
    genesis = inference_genesis()
    state = genesis.app_state
    state = dataclasses.replace(
        state,
        bank=BankGenesis(balances=(Balance(DEV.public_key.address, 300_000_000 * ICON), *balances([*NODES, TA]))),
        inference=dataclasses.replace(
            state.inference,
            models=(ModelEntry(MODEL, units),),
            params=InferenceParams(max_tokens=512, expiry_blocks=5),
        ),
        pricing=PricingGenesis(unit_price=Amount(10**9)),
    )
    c = Chain.start(tmp_path, paper(dataclasses.replace(genesis, app_state=state)))
    chain = InferenceChain(c.app, c.driver)
    chain.until_beacon()
    price = 10**9 * units
    start = chain.start_msg(1, max_tokens=200, prompt_tokens=40, max_price=price)
    assert chain.run(TA, start)[0] == 0
    executor = chain.request(start.request_id).executor
    finish = MsgFinishRequest(request_id=start.request_id, completion_tokens=200, response_hash=ANSWER)
    assert chain.run(chain.node(executor), finish) == (0, "")
    cost = 240 * price  # 120M icon
    issuance = chain.app.tokenomics.keeper.issuance.get(chain.app.read_context())
    assert issuance == issue_for_fee(Issuance(), cost, PAPER_CAP)
    assert 3 * PHASE_ISSUANCE < issuance.minted < 4 * PHASE_ISSUANCE
    assert chain.pending(executor) == cost + issuance.minted


def test_genesis_refuses_more_than_the_fixed_allocations(tmp_path: Path) -> None:
    too_much = Balance(key(1).public_key.address, MAX_SUPPLY - CORE_INCENTIVE + 1)
    genesis = Genesis(CHAIN_ID, GENESIS_TIME, app_state=AppState(bank=BankGenesis(balances=(too_much,))))
    with pytest.raises(ValueError, match="at most"):
        Chain.start(tmp_path, genesis)


def test_allocations_follow_appendix_e_with_grants_taken_from_the_founders() -> None:
    found = {b.address: int(b.amount) for b in allocations(5 * ICON)}
    assert found[PROVIDER_REWARD_ACCOUNT] == found[LIQUIDITY_POOL_ACCOUNT] == 120_000_000 * ICON
    assert found[FOUNDERS_ACCOUNT] == FOUNDERS - 5 * ICON
    assert sum(found.values()) + 5 * ICON == MAX_SUPPLY - CORE_INCENTIVE
    with pytest.raises(ValueError, match="exceed"):
        allocations(FOUNDERS + 1)


# Keeper-level tests of the governance entry points and the fixed allocations' payouts, with a fake race.


class FakeRace:
    """Weights set by the test; cycles of 10 blocks from height 1."""

    def __init__(self) -> None:
        self.weights: dict[bytes, int] = {}

    def schedule(self, ctx: Context) -> Schedule:
        from racenet.chain.modules.race import Params as RaceParams

        params = RaceParams()
        return Schedule(params, 1)

    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]:
        return sorted(self.weights.items())


class Held(ModuleKeeper):
    """A stand-in for verification's held rewards: what each node was given."""

    name = "held_test"
    given = UintMap(b"given/", ADDRESS)

    def __init__(self, bank_keeper: bank.Keeper) -> None:
        self.bank = bank_keeper

    def hold_reward(self, ctx: Context, payer: bytes, node: bytes, amount: int) -> None:
        self.bank.send(ctx, payer, node, amount)
        self.given.set(ctx, node, self.given.get(ctx, node) + amount)


Keepers = tuple[tokenomics.Keeper, bank.Keeper, FakeRace, Branch]


@pytest.fixture
def keepers(tmp_path: Path) -> Iterator[Keepers]:
    store = CommittedStore(tmp_path / "db")
    branch = Branch(store)
    bank_keeper, race = bank.Keeper(), FakeRace()
    keeper = tokenomics.Keeper(bank_keeper, race)
    keeper.use_rewards(Held(bank_keeper))
    yield keeper, bank_keeper, race, branch
    store.close()


def at(branch: Branch, height: int, time: int) -> Context:
    return Context(store=branch, block=BlockEnv(CHAIN_ID, height, time))


def init(keeper: tokenomics.Keeper, bank_keeper: bank.Keeper, branch: Branch, params: Params) -> None:
    ctx = at(branch, 0, GENESIS_TIME)
    for balance in allocations():
        bank_keeper.mint(ctx, balance.address, balance.amount)
    tokenomics.TokenomicsModule(keeper).init_genesis(ctx, TokenomicsGenesis(params=params))


def test_the_training_percentage_is_fixed_for_five_years_and_grants_pay_from_the_fund(keepers: Keepers) -> None:
    keeper, bank_keeper, _, branch = keepers
    init(keeper, bank_keeper, branch, Params())
    year5 = at(branch, 1, GENESIS_TIME + 1824 * DAY)
    with pytest.raises(ChainError) as refused:
        keeper.set_params(year5, Params(training_fund_percent=25))
    assert refused.value.code == Code.UNAUTHORIZED
    keeper.set_params(year5, Params(top_providers=5))  # other params may change
    keeper.set_params(at(branch, 2, GENESIS_TIME + 1825 * DAY), Params(training_fund_percent=25))
    assert keeper.params.get(year5).training_fund_percent == 25
    with pytest.raises(ChainError) as invalid:
        keeper.set_params(year5, Params(training_fund_percent=101))
    assert invalid.value.code == Code.INVALID_MESSAGE
    ctx = at(branch, 3, GENESIS_TIME)
    bank_keeper.send(ctx, FOUNDERS_ACCOUNT, TRAINING_FUND, 100)
    keeper.grant(ctx, key(9).public_key.address, 60)
    assert bank_keeper.balance(ctx, key(9).public_key.address) == 60
    with pytest.raises(ChainError) as short:
        keeper.grant(ctx, key(9).public_key.address, 41)
    assert short.value.code == Code.INSUFFICIENT_FUNDS
    assert keeper.training_share(ctx, 0, 7) + keeper.training_share(ctx, 7, 7) == 14 * 25 // 100


def test_the_additional_provider_reward_goes_to_the_top_sustained_providers_with_replacement(keepers: Keepers) -> None:
    keeper, bank_keeper, race, branch = keepers
    init(keeper, bank_keeper, branch, Params(top_providers=2, sustained_cycles=2))
    a, b, c, d = (key(n).public_key.address for n in (11, 12, 13, 14))
    race.weights = {a: 40, b: 30, c: 20, d: 10}
    length = race.schedule(at(branch, 1, 0)).length
    paid: list[dict[bytes, int]] = []

    def cycle_start(cycle: int) -> dict[bytes, int]:
        before = {n: bank_keeper.balance(at(branch, 0, 0), n) for n in (a, b, c, d)}
        ctx = at(branch, 1 + cycle * length, GENESIS_TIME + (cycle + 1) * DAY)
        keeper.begin_cycle(ctx)
        return {n: int(bank_keeper.balance(ctx, n)) - int(before[n]) for n in (a, b, c, d)}

    paid.append(cycle_start(0))  # streaks of 1: nobody sustained yet
    assert not any(paid[0].values())
    paid.append(cycle_start(1))  # a and b: the top 2 sustained, by weight
    due = tokenomics.ADDITIONAL_PROVIDER_REWARD * 2 * DAY // (4 * 365 * DAY)
    assert paid[1][a] + paid[1][b] == due and abs(paid[1][a] * 30 - paid[1][b] * 40) <= 70 and not paid[1][c]
    race.weights = {b: 30, c: 20, d: 10}  # a exits
    paid.append(cycle_start(2))
    assert not paid[2][a] and paid[2][b] and paid[2][c] and not paid[2][d]  # c replaces a
    race.weights = {a: 40, b: 30, c: 20, d: 10}  # a is back but must sustain again
    paid.append(cycle_start(3))
    assert not paid[3][a] and paid[3][b] and paid[3][c]
    ctx = at(branch, 1 + 3 * length, 0)
    assert keeper.payouts.get(ctx).provider_reward == sum(sum(p.values()) for p in paid)


def test_the_founders_vest_after_the_cliff_linearly_to_their_address(keepers: Keepers) -> None:
    keeper, bank_keeper, _, branch = keepers
    founder = key(20).public_key.address
    init(keeper, bank_keeper, branch, Params(founders=founder, founders_cliff_days=365, founders_vesting_days=1460))
    keeper.begin_day(at(branch, 1, GENESIS_TIME + 364 * DAY))
    assert bank_keeper.balance(at(branch, 1, 0), founder) == 0
    keeper.begin_day(at(branch, 2, GENESIS_TIME + 365 * DAY))
    assert bank_keeper.balance(at(branch, 2, 0), founder) == FOUNDERS * 365 // 1460
    keeper.begin_day(at(branch, 3, GENESIS_TIME + 5000 * DAY))
    assert bank_keeper.balance(at(branch, 3, 0), founder) == FOUNDERS
    assert bank_keeper.balance(at(branch, 3, 0), FOUNDERS_ACCOUNT) == 0


def test_query_tokenomics_on_the_command_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from racenet.cli.main import cli
    from racenet.node.embedded import EmbeddedNode
    from racenet.node.rpc_server import serve_rpc
    from tests.chain import with_beacon
    from tests.test_crash import free_port

    (tmp_path / "config").mkdir()
    # the embedded node stamps blocks with the wall clock: a genesis of now keeps every query in its first day
    genesis = with_beacon(dataclasses.replace(genesis_for([key(1)]), genesis_time=int(time.time())))
    genesis.save(tmp_path / "config" / "genesis.json")
    embedded = EmbeddedNode(tmp_path, block_time=0.1)
    loop = threading.Thread(target=embedded.run, daemon=True)
    loop.start()
    port = free_port()
    server = serve_rpc(embedded, "127.0.0.1", port)
    runner = CliRunner()
    try:
        url = f"http://127.0.0.1:{port}"
        shown = runner.invoke(cli, ["query", "tokenomics", "--node", url, "--json"])
        assert shown.exit_code == 0, shown.output
        value = json.loads(shown.stdout)
        assert (value["phase"], value["subsidy_bps"], value["minted"]) == (1, 5000, 0)  # capped: 1x the fee
        assert value["fees_to_next_phase"] == PHASE_ISSUANCE
        day = value["day"]
        assert value["minimum_today"] == minimum_daily_issuance(day) and value["training_fund_percent"] == 20
        text = runner.invoke(cli, ["query", "tokenomics", "--node", url]).stdout
        assert "phase: 1 of 12, subsidy 50.00% of what providers receive" in text
        assert f"minimum issuance {minimum_daily_issuance(day) // ICON} icon" in text
        down = runner.invoke(cli, ["query", "tokenomics", "--node", "http://127.0.0.1:9"])
        assert down.exit_code == 1 and "cannot reach node" in down.stderr and "Traceback" not in down.output
    finally:
        server.shutdown()
        embedded.stop()
        loop.join(timeout=30)
        embedded.close()
