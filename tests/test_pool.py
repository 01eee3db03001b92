"""The liquidity pool (whitepaper Appendix E): phases that sell out before the next opens, a purchase split exactly
across a phase boundary, sell-back by providers at the latest achieved price from the pool's usdt, the bridge's
deposits (never replayed, only by the bridge) and withdrawals (burned), hostile integers, and rounding that never
favours the trader.

The test schedule: three phases of 10 icon at 5,000, 7,777 and 20,000 micro-usdt per icon. After every block the
module invariants run (bank's icon and usdt supplies, the pool's stock) and the money is counted in both denoms.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result
from mnemonic import Mnemonic

from racenet.chain.app import GenesisError
from racenet.chain.app_state import AppState
from racenet.chain.authority import GOV_AUTHORITY
from racenet.chain.errors import ChainError, Code
from racenet.chain.genesis import Genesis
from racenet.chain.module import Msg, TxContext, TxEnv
from racenet.chain.modules.bank import USDT_BALANCE, Balance, BankGenesis
from racenet.chain.modules.pool import (
    DEFAULT_PHASES,
    ICON,
    POOL_ACCOUNT,
    STATE,
    USDT,
    WITHDRAWALS,
    Deposit,
    MsgBridgeDeposit,
    MsgBridgeWithdraw,
    MsgBuy,
    MsgSell,
    MsgUpdateParams,
    Params,
    Phase,
    PoolGenesis,
    PoolState,
    Withdrawal,
    quote_buy,
    sale_value,
)
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.modules.tokenomics import LIQUIDITY_POOL, allocations
from racenet.chain.query import QuerySpec
from racenet.chain.scalars import MAX_AMOUNT, Amount
from racenet.chain.store import Branch
from racenet.cli.main import cli
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.node.embedded import EmbeddedNode
from racenet.node.rpc_server import serve_rpc
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, INITIAL_BALANCE, Chain, balances, key
from tests.test_crash import free_port

BRIDGE, ALICE, BOB, CAROL = key(61), key(62), key(63), key(64)
"""ALICE and BOB are providers (they hold Race weight); CAROL is not."""
PHASES = tuple(Phase(size=Amount(10 * ICON), price=Amount(p)) for p in (5_000, 7_777, 20_000))
STOCK = 30 * ICON
A = TypeVar("A")
R = TypeVar("R")


def address(k: PrivateKey) -> bytes:
    return k.public_key.address


def genesis(stock: int = STOCK, phase: int = 0, bridge: bytes | None = None, usdt: int = 0) -> Genesis:
    """ALICE, BOB, CAROL and BRIDGE with icon for fees, ALICE and BOB with Race weight (they may sell icon back);
    the pool with `stock` nicoin and `usdt`."""
    pool_icon = (Balance(POOL_ACCOUNT, Amount(stock)),) if stock else ()
    pool_usdt = (Balance(POOL_ACCOUNT, Amount(usdt)),) if usdt else ()
    params = Params(phases=PHASES, bridge=address(BRIDGE) if bridge is None else bridge)
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        app_state=AppState(
            bank=BankGenesis(balances=(*balances([BRIDGE, ALICE, BOB, CAROL]), *pool_icon), usdt_balances=pool_usdt),
            race=RaceGenesis(
                nodes=tuple(RaceNode(address(k), key(160 + i).public_key.raw, 10) for i, k in enumerate((ALICE, BOB)))
            ),
            pool=PoolGenesis(params=params, phase=phase),
        ),
    )


class PoolChain(Chain):
    """A chain that counts the money in both denoms after every block."""

    deposited: int = 0
    withdrawn: int = 0
    icon_supply: int = 0

    def ask(self, spec: QuerySpec[A, R], arg: A | None = None) -> R:
        result = self.app.query(spec.path, b"" if arg is None else spec.arg.encode(arg))
        assert result.code == 0, result.log
        return spec.decode(json.loads(result.value))

    def state(self) -> PoolState:  # type: ignore[override]
        return self.ask(STATE)

    def usdt(self, who: PrivateKey | bytes) -> int:
        holder = address(who) if isinstance(who, PrivateKey) else who
        return self.app.bank.keeper.usdt_balance(self.app.read_context(), holder)

    def run(self, *signed: tuple[PrivateKey, Msg]) -> list[tuple[int, str]]:
        """Each message in its own transaction of one decided block; each one's (code, log). Sequences are re-read
        (a message that fails validation does not use its sequence)."""
        results = self.decided_block(*(self.tx(k, m) for k, m in signed)).tx_results
        ctx = self.app.read_context()
        for k, _ in signed:
            self.sequences[address(k)] = self.app.auth.keeper.account(ctx, address(k)).sequence
        for (_, msg), result in zip(signed, results, strict=True):
            if result.code == 0 and isinstance(msg, MsgBridgeDeposit):
                self.deposited += msg.amount
            if result.code == 0 and isinstance(msg, MsgBridgeWithdraw):
                self.withdrawn += msg.amount
        self.count_money()
        return [(r.code, r.log) for r in results]

    def count_money(self) -> None:
        """icon is never created or destroyed by the pool; usdt exists exactly as deposited minus withdrawn."""
        ctx = self.app.read_context()
        bank = self.app.bank.keeper
        assert bank.supply.get(ctx) == self.icon_supply
        assert bank.usdt_supply.get(ctx) == self.deposited - self.withdrawn
        assert sum(b for _, b in bank.usdt_balances.items(ctx)) == self.deposited - self.withdrawn

    def ok(self, *signed: tuple[PrivateKey, Msg]) -> None:
        assert self.run(*signed) == [(0, "")] * len(signed)

    def fund(self, k: PrivateKey, amount: int, deposit_id: str) -> None:
        self.ok((BRIDGE, MsgBridgeDeposit(deposit_id=deposit_id, recipient=address(k), amount=amount)))


def start(path: Path, g: Genesis) -> PoolChain:
    c = Chain.start(path, g)
    chain = PoolChain(c.app, c.driver)
    chain.icon_supply = int(chain.app.bank.keeper.supply.get(chain.app.read_context()))
    chain.deposited = int(chain.app.bank.keeper.usdt_supply.get(chain.app.read_context()))
    return chain


@pytest.fixture
def chain(tmp_path: Path) -> PoolChain:
    c = start(tmp_path, genesis())
    c.fund(ALICE, 10**9, "eth:0xa1:0")
    return c


def test_a_phase_sells_out_before_the_next_opens_at_the_higher_price(chain: PoolChain) -> None:
    assert chain.state() == PoolState(
        phase=1, phases=3, price=5_000, sell_price=5_000, left=10 * ICON, sold_out=False, icon=STOCK, usdt=0
    )
    chain.ok((ALICE, MsgBuy(usdt=49_999, min_icon=0)))  # a micro-usdt short of the whole phase
    bought = 49_999 * ICON // 5_000
    assert chain.balance(ALICE) == INITIAL_BALANCE - fees(chain, ALICE) + bought
    assert chain.state().phase == 1 and chain.state().left == 10 * ICON - bought == 200_000
    chain.ok((ALICE, MsgBuy(usdt=1, min_icon=200_000)))  # the last 200,000 nicoin: exactly a micro-usdt
    state = chain.state()
    assert (state.phase, state.price, state.left, state.usdt) == (2, 7_777, 10 * ICON, 50_000)
    assert chain.usdt(ALICE) == 10**9 - 50_000


def fees(chain: PoolChain, k: PrivateKey) -> int:
    """The fees `k` paid so far (every transaction here pays the tests' flat fee)."""
    return chain.sequences[address(k)] * FEE


def test_a_purchase_that_crosses_a_phase_boundary_is_split_exactly(chain: PoolChain) -> None:
    budget = 50_000 + 12_345
    chain.ok((ALICE, MsgBuy(usdt=budget, min_icon=0)))
    second = 12_345 * ICON // 7_777  # the rest of the budget at the second phase's price, rounded down
    paid = 50_000 + -(-second * 7_777 // ICON)  # the second part's cost rounded up
    assert second == 1_587_373_023 and paid == 62_345
    assert chain.usdt(ALICE) == 10**9 - paid
    assert chain.balance(ALICE) == INITIAL_BALANCE - fees(chain, ALICE) + 10 * ICON + second
    state = chain.state()
    assert (state.phase, state.left, state.icon, state.usdt) == (
        2,
        10 * ICON - second,
        STOCK - 10 * ICON - second,
        paid,
    )
    assert quote_buy(PHASES, 0, STOCK, budget).icon == 10 * ICON + second  # the CLI's quote is the chain's


def test_buying_everything_leaves_the_pool_sold_out(chain: PoolChain) -> None:
    whole = 10 * (5_000 + 7_777 + 20_000)
    chain.ok((ALICE, MsgBuy(usdt=whole + 999, min_icon=STOCK)))
    assert chain.usdt(ALICE) == 10**9 - whole  # the unused 999 stays with the buyer
    assert chain.state() == PoolState(
        phase=3, phases=3, price=20_000, sell_price=7_777, left=0, sold_out=True, icon=0, usdt=whole
    )
    [(code, log)] = chain.run((ALICE, MsgBuy(usdt=1_000, min_icon=0)))
    assert code == Code.INSUFFICIENT_FUNDS and "sold all" in log


def test_slippage_bounds_refuse_a_worse_trade(chain: PoolChain) -> None:
    [(code, log)] = chain.run((ALICE, MsgBuy(usdt=5_000, min_icon=ICON + 1)))
    assert code == Code.OUT_OF_RANGE and "less than the" in log
    chain.ok((ALICE, MsgBuy(usdt=5_000, min_icon=ICON)))
    [(code, log)] = chain.run((ALICE, MsgSell(icon=ICON, min_usdt=5_001)))
    assert code == Code.OUT_OF_RANGE and "less than the 5001 asked" in log
    [(code, log)] = chain.run((BOB, MsgBuy(usdt=5_000, min_icon=0)))  # BOB holds no usdt
    assert code == Code.INSUFFICIENT_FUNDS and "has 0 micro-usdt, needs 5000" in log


def test_providers_sell_back_at_the_latest_achieved_price_and_refill_the_phase(chain: PoolChain) -> None:
    chain.ok((ALICE, MsgBuy(usdt=50_000, min_icon=10 * ICON)))  # phase 2 opens at 7,777; phase 1 sold at 5,000
    assert (chain.state().price, chain.state().sell_price) == (7_777, 5_000)
    chain.ok((BOB, MsgSell(icon=ICON, min_usdt=5_000)))
    assert chain.usdt(BOB) == 5_000
    state = chain.state()
    assert (state.phase, state.left, state.usdt) == (2, 11 * ICON, 45_000)
    [(code, log)] = chain.run((BOB, MsgSell(icon=10 * ICON, min_usdt=0)))  # 50,000 > 45,000 the pool holds
    assert code == Code.INSUFFICIENT_FUNDS and "the pool holds 45000 micro-usdt, this sale needs 50000" in log
    [(code, log)] = chain.run((BOB, MsgSell(icon=100_000, min_usdt=0)))  # 0.5 micro-usdt
    assert code == Code.INVALID_MESSAGE and "worth less than a micro-usdt" in log
    chain.ok((ALICE, MsgBuy(usdt=7_777 * 11, min_icon=11 * ICON)))  # the refilled phase sells out in full
    assert (chain.state().phase, chain.state().price, chain.state().sell_price) == (3, 20_000, 7_777)


def test_only_providers_sell_back(chain: PoolChain) -> None:
    chain.fund(CAROL, 10**6, "eth:c0:0")
    chain.ok((CAROL, MsgBuy(usdt=5_000, min_icon=ICON)))
    [(code, log)] = chain.run((CAROL, MsgSell(icon=ICON, min_usdt=0)))
    assert code == Code.UNAUTHORIZED and "only providers" in log


def test_emptying_a_phase_and_selling_straight_back_gains_nothing(chain: PoolChain) -> None:
    """The buyer of a phase's last icon opens the next phase; selling back is paid the price it bought at, not the
    new one nothing has sold at (else one transaction would drain the pool's usdt at every boundary)."""
    chain.ok((ALICE, MsgBuy(usdt=49_990, min_icon=0)))
    before = chain.usdt(ALICE)
    chain.ok((ALICE, MsgBuy(usdt=10, min_icon=2 * ICON // 1_000)))  # the last 0.002 icon of phase 1
    assert chain.state().phase == 2
    chain.ok((ALICE, MsgSell(icon=2 * ICON // 1_000, min_usdt=0)))
    assert chain.usdt(ALICE) <= before


def test_a_deposit_is_credited_once_and_only_from_the_bridge(chain: PoolChain) -> None:
    [(code, log)] = chain.run((BRIDGE, MsgBridgeDeposit(deposit_id="eth:0xa1:0", recipient=address(BOB), amount=5)))
    assert code == Code.ALREADY_DONE and "already credited" in log
    [(code, log)] = chain.run((ALICE, MsgBridgeDeposit(deposit_id="eth:0xa2:0", recipient=address(ALICE), amount=5)))
    assert code == Code.UNAUTHORIZED and "bridge account" in log
    assert chain.usdt(BOB) == 0 and chain.usdt(ALICE) == 10**9
    chain.fund(BOB, 5, "eth:0xa2:0")  # the id ALICE tried is still free for the real deposit
    assert chain.usdt(BOB) == 5


def test_without_a_bridge_account_nobody_can_mint_usdt(tmp_path: Path) -> None:
    chain = start(tmp_path, genesis(bridge=b""))
    [(code, _)] = chain.run((BRIDGE, MsgBridgeDeposit(deposit_id="x", recipient=address(BRIDGE), amount=1)))
    assert code == Code.UNAUTHORIZED


def test_a_withdrawal_burns_usdt_and_is_recorded_for_the_bridge(chain: PoolChain) -> None:
    chain.ok((ALICE, MsgBridgeWithdraw(amount=300, destination="0xabc")))
    chain.ok((ALICE, MsgBridgeWithdraw(amount=1, destination="0xdef")))
    assert chain.usdt(ALICE) == 10**9 - 301
    recorded = chain.ask(WITHDRAWALS).withdrawals
    assert [(w.id, w.owner, w.amount, w.destination) for w in recorded] == [
        (1, address(ALICE), 300, "0xabc"),
        (2, address(ALICE), 1, "0xdef"),
    ]
    [(code, _)] = chain.run((BOB, MsgBridgeWithdraw(amount=1, destination="0xabc")))
    assert code == Code.INSUFFICIENT_FUNDS
    assert chain.ask(USDT_BALANCE, address(ALICE)) == Balance(address(ALICE), 10**9 - 301)


def test_hostile_integers_are_refused_with_a_clear_code(chain: PoolChain) -> None:
    chain.fund(BOB, MAX_AMOUNT - 10**9 - 1, "eth:0xbig:0")  # the usdt supply reaches u64's limit
    extremes = (0, 1, 2**63, MAX_AMOUNT)
    for n in extremes:
        for m in extremes:
            messages: list[tuple[PrivateKey, Msg]] = [
                (BOB, MsgBuy(usdt=n, min_icon=m)),
                (BOB, MsgSell(icon=n, min_usdt=m)),
                (ALICE, MsgBuy(usdt=n, min_icon=m)),
                (BRIDGE, MsgBridgeDeposit(deposit_id=f"h{n}-{m}", recipient=address(ALICE), amount=n)),
                (BOB, MsgBridgeWithdraw(amount=n, destination="0x1")),
            ]
            for code, log in chain.run(*messages):
                assert code != Code.INTERNAL, log
    assert all(c != Code.INTERNAL for c, _ in chain.run((BOB, MsgSell(icon=MAX_AMOUNT, min_usdt=0))))


def test_rounding_never_favours_the_trader() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        prices = sorted(rng.sample(range(1, 3_000_000), 3))
        phases = tuple(Phase(size=Amount(rng.randrange(1, 5 * ICON)), price=Amount(p)) for p in prices)
        stock = sum(p.size for p in phases) - rng.randrange(0, phases[0].size)
        budget = rng.randrange(1, 10**7)
        fill = quote_buy(phases, 0, stock, budget)
        # the exact value of what was bought, phase by phase, is never more than was paid, which is within budget
        exact, left, k, rest = Fraction(0), stock - phases[1].size - phases[2].size, 0, fill.icon
        while rest:
            part = min(rest, left)
            exact += Fraction(part * phases[k].price, ICON)
            rest -= part
            k, left = k + 1, phases[min(k + 1, 2)].size
        assert exact <= fill.usdt <= budget
        assert fill.usdt - exact < k  # under a micro-usdt of rounding per phase bought from
        assert quote_buy(phases, 0, stock, fill.usdt) == fill  # the charge buys exactly as much as the budget did
        # selling it all back at the open phase's price never returns more than was paid
        price = phases[fill.phase].price
        assert sale_value(price, fill.icon) <= Fraction(fill.icon * price, ICON)
        if fill.phase == 0:
            assert sale_value(price, fill.icon) <= fill.usdt


def test_splitting_a_purchase_never_pays_less() -> None:
    rng = random.Random(11)
    for _ in range(500):
        budget = rng.randrange(2, 10**6)
        one = quote_buy(PHASES, 0, STOCK, budget)
        first = quote_buy(PHASES, 0, STOCK, budget // 2)
        second = quote_buy(PHASES, first.phase, STOCK - first.icon, budget - first.usdt)
        assert first.icon + second.icon <= one.icon


def test_genesis_checks_the_pool_stock_and_export_round_trips(tmp_path: Path) -> None:
    with pytest.raises(
        GenesisError, match="15000000000 nicoin, less than the 20000000000 the phases after phase 1 offer"
    ):
        start(tmp_path / "short", genesis(stock=15 * ICON))
    unfunded = start(tmp_path / "unfunded", genesis(stock=0))
    assert unfunded.state().sold_out and unfunded.state().phase == 3
    chain = start(tmp_path / "chain", genesis(usdt=1_000))
    assert chain.state().usdt == 1_000
    chain.fund(ALICE, 10**6, "eth:1")
    chain.ok((ALICE, MsgBuy(usdt=60_000, min_icon=0)), (ALICE, MsgBridgeWithdraw(amount=5, destination="0x9")))
    chain.ok((BOB, MsgSell(icon=3 * ICON, min_usdt=0)))  # refills phase 2 beyond its size
    exported = chain.app.export_genesis()
    again = start(tmp_path / "again", Genesis(chain_id=CHAIN_ID, genesis_time=GENESIS_TIME, app_state=exported))
    assert again.state() == chain.state()
    assert again.app.export_genesis().pool == exported.pool
    assert exported.bank.usdt_balances == again.app.export_genesis().bank.usdt_balances


def test_the_default_schedule_sells_the_whole_120m_allocation(tmp_path: Path) -> None:
    assert sum(p.size for p in DEFAULT_PHASES) == LIQUIDITY_POOL
    assert [p.price for p in DEFAULT_PHASES[:3]] == [5_000, 10_000, 20_000]  # $0.005, $0.01, then doubling
    assert sum(int(p.size) * int(p.price) for p in DEFAULT_PHASES) // ICON == 61_380_000 * USDT  # $61.38M in all
    g = genesis(stock=LIQUIDITY_POOL)
    params = Params(bridge=address(BRIDGE))
    chain = start(
        tmp_path, dataclasses.replace(g, app_state=dataclasses.replace(g.app_state, pool=PoolGenesis(params)))
    )
    state = chain.state()
    assert (state.phase, state.phases, state.price, state.left) == (1, 10, 5_000, 12_000_000 * ICON)
    chain.fund(ALICE, 100_000 * USDT, "eth:big")
    chain.ok((ALICE, MsgBuy(usdt=30_000 * USDT, min_icon=6_000_000 * ICON)))  # a budget × 10^9 beyond u64
    chain.ok((ALICE, MsgBuy(usdt=30_010 * USDT, min_icon=6_001_000 * ICON)))  # phase 1's rest, then 1,000 icon
    state = chain.state()
    assert (state.phase, state.price, state.left, state.usdt) == (2, 10_000, 11_999_000 * ICON, 60_010 * USDT)
    chain.ok((ALICE, MsgSell(icon=6_000_000 * ICON, min_usdt=30_000 * USDT)))  # sold back at phase 1's $0.005
    state = chain.state()
    assert (state.phase, state.left, state.usdt) == (2, 17_999_000 * ICON, 30_010 * USDT)
    [(code, log)] = chain.run((ALICE, MsgSell(icon=6_002_001 * ICON, min_usdt=0)))
    assert (
        code == Code.INSUFFICIENT_FUNDS and "the pool holds 30010000000 micro-usdt, this sale needs 30010005000" in log
    )


def test_only_governance_changes_the_params_and_not_the_phases_already_opened(chain: PoolChain) -> None:
    chain.ok((ALICE, MsgBuy(usdt=50_000, min_icon=0)))  # phase 2 is open
    repriced = Params(phases=(*PHASES[:2], Phase(size=Amount(10 * ICON), price=Amount(30_000))))
    [(code, _)] = chain.run((ALICE, MsgUpdateParams(repriced)))
    assert code == Code.UNAUTHORIZED
    reopened = Params(phases=(PHASES[0], Phase(size=Amount(10 * ICON), price=Amount(9_000)), PHASES[2]))
    keeper, branch = chain.app.pool.keeper, Branch(chain.app.store)
    ctx = TxContext(store=branch, block=chain.app.read_context().block, tx=TxEnv(GOV_AUTHORITY, b""))
    with pytest.raises(ChainError, match="keeps phases 1 to 2"):
        keeper.handle_update_params(ctx, MsgUpdateParams(reopened))
    keeper.handle_update_params(ctx, MsgUpdateParams(repriced))
    assert keeper.params.get(ctx) == repriced


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The home (keys `alice`: icon and 1 usdt, `bob`: icon only, `bridge`: the bridge account) and RPC URL of an
    embedded node making blocks."""
    (tmp_path / "config").mkdir()
    g = genesis()
    bank = dataclasses.replace(g.app_state.bank, usdt_balances=(Balance(address(ALICE), Amount(10**6)),))
    dataclasses.replace(g, app_state=dataclasses.replace(g.app_state, bank=bank)).save(
        tmp_path / "config" / "genesis.json"
    )
    keyring = Keyring(tmp_path / "keyring")
    for name, k in (("alice", ALICE), ("bob", BOB), ("bridge", BRIDGE)):
        keyring.import_mnemonic(name, Mnemonic("english").to_mnemonic(k.seed), "")
    embedded = EmbeddedNode(tmp_path, block_time=0.1)
    loop = threading.Thread(target=embedded.run, daemon=True)
    loop.start()
    port = free_port()
    server = serve_rpc(embedded, "127.0.0.1", port)
    try:
        yield tmp_path, f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        embedded.stop()
        loop.join(timeout=30)
        embedded.close()


def run_cli(*args: str) -> Result:
    return CliRunner(env={"RACENET_PASSPHRASE": "", "RACENET_HOME": None}).invoke(cli, list(args))


def assert_error(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_pool_buy_sell_and_show_on_the_command_line(node: tuple[Path, str]) -> None:
    home, url = node
    args = ["--home", str(home), "--node", url]
    shown = json.loads(run_cli("pool", "show", *args, "--json", "--account", "alice").stdout)
    assert shown["state"]["phase"] == 1 and shown["state"]["price"] == 5_000 and shown["account"]["amount"] == 10**6
    assert [p["price"] for p in shown["params"]["phases"]] == [5_000, 7_777, 20_000]
    bought = run_cli("pool", "buy", "0.062345usdt", "--from", "alice", *args)
    assert bought.exit_code == 0, bought.output
    assert "bought 11.587373023 icon for 0.062345 usdt in block" in bought.stdout
    sold = run_cli("pool", "sell", "1icon", "--from", "bob", "--json", *args)
    assert sold.exit_code == 0, sold.output
    assert (json.loads(sold.stdout)["icon"], json.loads(sold.stdout)["usdt"]) == (ICON, 5_000)
    text = run_cli("pool", "show", *args).stdout
    assert "phase 2 of 3 at 0.007777 usdt per icon: 9.412626977 icon left" in text
    assert "providers sell back at 0.005 usdt per icon" in text
    assert "the pool holds 19.412626977 icon and 0.057345 usdt" in text
    assert_error(run_cli("pool", "buy", "1usdt", "--from", "bob", *args), "has 5000 micro-usdt, needs")
    assert_error(run_cli("pool", "buy", "0.01usdt", "--min", "5icon", "--from", "alice", *args), "less than the")
    assert_error(run_cli("pool", "sell", "100icon", "--from", "bob", *args), "the pool holds 57345 micro-usdt")
    assert_error(run_cli("pool", "buy", "5 dollars", "--from", "alice", *args), "invalid usdt amount")
    assert_error(run_cli("pool", "sell", "0", "--from", "bob", *args), "icon to sell must be positive")
    deposit = ["pool", "bridge-deposit", "eth:0xfeed:0", "bob", "2usdt", *args]
    credited = run_cli(*deposit, "--from", "bridge")
    assert credited.exit_code == 0, credited.output
    assert "credited 2 usdt for eth:0xfeed:0" in credited.stdout
    assert_error(run_cli(*deposit, "--from", "bridge"), "was already credited")
    assert_error(run_cli(*deposit[:2], "eth:0xfeed:1", *deposit[3:], "--from", "alice"), "only the bridge account")
    assert_error(run_cli(*deposit[:2], "ETH:0xFEED:2", *deposit[3:], "--from", "bridge"), "lower case")
    assert_error(run_cli("pool", "show", "--node", "http://127.0.0.1:9"), "cannot reach node")


@pytest.mark.parametrize(
    ("deposits", "withdrawals", "message"),
    [
        (
            (Deposit(deposit_id="", recipient=address(ALICE), amount=Amount(1), height=Amount(1)),),
            (),
            "deposit_id is 1 to 128 characters",
        ),
        (
            (Deposit(deposit_id="eth:0xA1:0", recipient=address(ALICE), amount=Amount(1), height=Amount(1)),),
            (),
            "lower case",
        ),
        (
            (Deposit(deposit_id="eth:0xa1:0", recipient=address(ALICE), amount=Amount(0), height=Amount(1)),),
            (),
            "amount must be positive",
        ),
        (
            (),
            (
                Withdrawal(
                    id=Amount(MAX_AMOUNT), owner=address(ALICE), amount=Amount(5), destination="0x9", height=Amount(1)
                ),
            ),
            "ids 1 to",
        ),
        (
            (),
            (
                Withdrawal(
                    id=Amount(1), owner=address(ALICE), amount=Amount(5), destination="\u00e9t\u00e9", height=Amount(1)
                ),
            ),
            "printable ASCII",
        ),
    ],
)
def test_genesis_refuses_records_no_message_could_have_made(
    deposits: tuple[Deposit, ...], withdrawals: tuple[Withdrawal, ...], message: str
) -> None:
    """A genesis record the messages would refuse (an empty or differently spelled deposit id, a withdrawal id
    where the next would overflow) is refused, so it can neither mint twice nor block withdrawals."""
    state = PoolGenesis(params=Params(phases=PHASES), deposits=deposits, withdrawals=withdrawals)
    with pytest.raises(ValueError, match=message):
        state.validate()


def test_a_deposit_id_has_one_spelling(chain: PoolChain) -> None:
    [(code, log)] = chain.run((BRIDGE, MsgBridgeDeposit(deposit_id="eth:0xA1:0", recipient=address(BOB), amount=5)))
    assert code == Code.INVALID_MESSAGE and "lower case" in log


def test_the_tokenomics_allocation_is_what_the_pool_sells(tmp_path: Path) -> None:
    """A genesis made from Appendix E's allocations opens phase 1 with its 12M icon for sale."""
    granted = 4 * INITIAL_BALANCE
    g = genesis(stock=0)
    bank = dataclasses.replace(g.app_state.bank, balances=(*g.app_state.bank.balances, *allocations(granted)))
    chain = start(
        tmp_path, dataclasses.replace(g, app_state=dataclasses.replace(g.app_state, bank=bank, pool=PoolGenesis()))
    )
    state = chain.state()
    assert (state.phase, state.price, state.left, state.icon) == (1, 5_000, 12_000_000 * ICON, LIQUIDITY_POOL)
