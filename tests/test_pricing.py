"""The pricing module (whitepaper Appendix J): votes by Race weight holders, the weighted median with ties, even
splits and non-voters at the last price, the new price from exactly the next cycle, and hostile prices.

Weights 10, 20, 30, 40 (total 100); nobody mines, so every tally keeps them. Cycles are 8 blocks.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from mnemonic import Mnemonic

from racenet.chain.app import GenesisError
from racenet.chain.app_state import AppState
from racenet.chain.errors import Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.inference import MODELS as INFERENCE_MODELS
from racenet.chain.modules.inference import InferenceGenesis, ModelEntry, ServerEntry
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.pricing import (
    MAX_UNIT_PRICE,
    MODELS,
    PRICE,
    VOTES,
    MsgVotePrice,
    PriceVote,
    PricingGenesis,
    UnitPrice,
    weighted_median,
)
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.query import QuerySpec
from racenet.chain.scalars import MAX_AMOUNT, Amount
from racenet.cli.main import cli
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.node.embedded import EmbeddedNode
from racenet.node.rpc_server import serve_rpc
from tests.chain import CHAIN_ID, GENESIS_TIME, Chain, balances, beacon_validators, key, with_beacon
from tests.test_crash import free_port
from tests.test_inference_chain import DEV, MODEL, TA, InferenceChain

NODES = [key(1), key(2), key(3), key(4)]
WEIGHTS = [10, 20, 30, 40]
STRANGER = key(52)
GENESIS_PRICE = 1_000
UNITS = 3
R = TypeVar("R")


def genesis(pricing: PricingGenesis | None = None) -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(WEIGHTS)],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*NODES, DEV, TA, STRANGER])),
            race=RaceGenesis(
                params=RaceParams(race_blocks=4, reveal_blocks=2, vote_blocks=1, escalation_blocks=1),
                nodes=tuple(
                    RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
                    for i, (k, w) in enumerate(zip(NODES, WEIGHTS, strict=True))
                ),
            ),
            inference=InferenceGenesis(
                params=InferenceParams(max_tokens=512, expiry_blocks=30),
                models=(ModelEntry(MODEL, UNITS), ModelEntry("big", 7)),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"https://node{i}.example.com")
                    for i, k in enumerate(NODES)
                ),
            ),
            pricing=pricing or PricingGenesis(unit_price=Amount(GENESIS_PRICE)),
        ),
    )


class PricingChain(InferenceChain):
    def ask(self, spec: QuerySpec[Any, R]) -> R:
        """A query through the App's query path, decoded as a client would."""
        result = self.app.query(spec.path, b"")
        assert result.code == 0, result.log
        return spec.decode(json.loads(result.value))

    def vote(self, *votes: tuple[PrivateKey, int]) -> list[tuple[int, str]]:
        """Every vote in one decided block; each one's (code, log). Sequences are re-read afterwards (a message
        that fails validation does not use its sequence)."""
        results = self.decided_block(*(self.tx(k, MsgVotePrice(p)) for k, p in votes)).tx_results
        accounts = self.app.auth.keeper
        for k, _ in votes:
            address = k.public_key.address
            self.sequences[address] = accounts.account(self.app.read_context(), address).sequence
        return [(r.code, r.log) for r in results]

    def cycle_end(self) -> int:
        """The last height of the cycle the next block belongs to (its end block sets the next price)."""
        schedule = self.app.race.keeper.schedule(self.app.read_context())
        return schedule.tally_height(schedule.cycle(self.app.height + 1))

    def until(self, height: int) -> None:
        while self.app.height < height:
            assert not [e for e in self.decided_block().events if e.type == "hook_failed"]

    def end_cycle(self) -> UnitPrice:
        """Run to the end of the current cycle; the price it set."""
        self.until(self.cycle_end())
        return self.ask(PRICE)


@pytest.fixture
def chain(tmp_path: Path) -> PricingChain:
    c = Chain.start(tmp_path, genesis())
    return PricingChain(c.app, c.driver)


def test_weighted_median_is_the_lowest_price_reaching_half_the_weight() -> None:
    assert weighted_median([(5, 10), (7, 20), (9, 30), (11, 40)]) == 9  # 10 + 20 + 30 = 60 ≥ 50
    assert weighted_median([(9, 50), (5, 50)]) == 5  # an even split gives the lower price
    assert weighted_median([(7, 30), (9, 50), (7, 20)]) == 7  # equal prices pool their weight: 50 of 100
    assert weighted_median([(9, 30), (5, 40), (9, 30)]) == 9  # 40 < 50, then 100
    assert weighted_median([(1, 0), (9, 10), (3, 0)]) == 9  # no weight, no say
    assert weighted_median([(1, 0)]) is None and weighted_median([]) is None
    votes = [(random.Random(n).randrange(1, 50), random.Random(-n).randrange(0, 9)) for n in range(40)]
    shuffled = random.Random(1).sample(votes, len(votes))
    assert weighted_median(votes) == weighted_median(shuffled)  # order of the voters never matters


def test_weighted_median_on_chain_with_ties_and_an_even_split(chain: PricingChain) -> None:
    n1, n2, n3, n4 = NODES
    assert chain.vote((n1, 700), (n2, 900), (n3, 900), (n4, 700)) == [(0, "")] * 4
    votes = chain.ask(VOTES)
    assert votes.median == 700  # 700 pools 10 + 40 = 50, exactly half: the lower price
    seen = {v.address: (v.price, v.weight) for v in votes.votes}
    assert seen == {k.public_key.address: (p, w) for k, p, w in zip(NODES, [700, 900, 900, 700], WEIGHTS, strict=True)}
    assert chain.end_cycle().price == 700
    assert chain.vote((n1, 900)) == [(0, "")]  # 700 keeps only 40: 900 (60) is the median now
    assert chain.end_cycle().price == 900


def test_non_voters_count_at_the_last_price_not_the_genesis_price(chain: PricingChain) -> None:
    n3, n4 = NODES[2:]
    assert chain.vote((n3, 3_000), (n4, 3_000)) == [(0, ""), (0, "")]
    first = chain.end_cycle()  # n1, n2 (30) count at the genesis 1,000; 3,000 holds 70
    assert first.price == 3_000
    assert chain.vote((n4, 500)) == [(0, "")]
    # 500 (40) < half; n3 keeps its vote of 3,000 (30) and n1, n2 (30) now count at 3,000: at the genesis price
    # they would have made it 1,000.
    assert chain.ask(VOTES).median == 3_000
    second = chain.end_cycle()
    assert second == UnitPrice(Amount(3_000), first.cycle + 1)
    assert {v.price for v in chain.ask(VOTES).votes} == {500, 3_000}  # a vote stands until replaced


def test_nobody_voting_keeps_the_price_and_a_vote_replaces_the_previous_one(chain: PricingChain) -> None:
    assert chain.end_cycle().price == GENESIS_PRICE
    n4 = NODES[3]
    assert chain.vote((n4, 100_000), (n4, 2_000)) == [(0, ""), (0, "")]
    assert [(v.price, v.weight) for v in chain.ask(VOTES).votes] == [(2_000, 40)]
    assert chain.end_cycle().price == GENESIS_PRICE  # 2,000 holds 40 of 100


def test_a_vote_without_race_weight_is_refused(chain: PricingChain) -> None:
    code, log = chain.vote((STRANGER, 5))[0]
    assert code == Code.UNAUTHORIZED and "Race weight" in log
    assert chain.ask(VOTES).votes == ()
    assert chain.app.check_tx(chain.tx(DEV, MsgVotePrice(5))).code == Code.UNAUTHORIZED  # kept out of the mempool


def test_the_new_price_applies_from_exactly_the_next_cycle(chain: PricingChain) -> None:
    chain.until_beacon()
    chain.until(chain.cycle_end())  # the votes go in a cycle's first block
    assert chain.vote((NODES[2], 2_000), (NODES[3], 2_000)) == [(0, ""), (0, "")]
    last = chain.cycle_end()
    chain.until(last - 1)
    in_last_block = chain.start_msg(1, max_tokens=10, max_price=GENESIS_PRICE * UNITS)
    assert chain.decided_block(chain.tx(TA, in_last_block)).tx_results[0].code == 0  # the cycle's last block
    assert chain.app.height == last
    price = chain.ask(PRICE)
    assert price.price == 2_000 and chain.app.race.keeper.schedule(chain.app.read_context()).cycle(last + 1) == (
        price.cycle
    )
    held = chain.start_msg(5, max_tokens=10, max_price=GENESIS_PRICE * UNITS)  # signed at the old price, held
    assert chain.decided_block(chain.tx(TA, held)).tx_results[0].code == Code.INVALID_MESSAGE
    in_next_cycle = chain.start_msg(2, max_tokens=10, max_price=2_000 * UNITS)
    assert chain.decided_block(chain.tx(TA, in_next_cycle)).tx_results[0].code == 0
    old, new = chain.request(in_last_block.request_id), chain.request(in_next_cycle.request_id)
    assert (old.price_per_token, old.escrow) == (GENESIS_PRICE * UNITS, (20 + 10) * GENESIS_PRICE * UNITS)
    assert (new.price_per_token, new.escrow) == (2_000 * UNITS, (20 + 10) * 2_000 * UNITS)
    models = chain.ask(MODELS)
    assert models.unit_price == 2_000
    assert {(m.id, m.units_per_token, m.price_per_token) for m in models.models} == {
        (MODEL, UNITS, 2_000 * UNITS),
        ("big", 7, 2_000 * 7),
    }
    assert {m.price_per_token for m in chain.ask(INFERENCE_MODELS).models} == {2_000 * UNITS, 2_000 * 7}


def test_hostile_prices_are_refused_and_the_highest_cannot_overflow_an_escrow(chain: PricingChain) -> None:
    chain.until_beacon()
    for hostile in (0, MAX_AMOUNT, MAX_UNIT_PRICE + 1):
        [(code, log)] = chain.vote((NODES[3], hostile))
        assert code == Code.INVALID_MESSAGE and "a unit price is 1 to 1000000000 nicoin" in log
    assert chain.ask(VOTES).votes == ()
    assert chain.vote((NODES[2], MAX_UNIT_PRICE), (NODES[3], MAX_UNIT_PRICE)) == [(0, ""), (0, "")]
    assert chain.end_cycle().price == MAX_UNIT_PRICE
    limits = InferenceParams()
    assert MAX_UNIT_PRICE * 7 * (limits.max_prompt_tokens + limits.max_tokens) < 2**64  # the bound's promise
    start = chain.start_msg(3, max_tokens=512, prompt_tokens=32_768, max_price=MAX_UNIT_PRICE * UNITS)
    result = chain.decided_block(chain.tx(TA, start)).tx_results[0]
    assert result.code == Code.INSUFFICIENT_FUNDS, result.log  # an escrow of 99,840 icon: no funds, no overflow
    affordable = chain.start_msg(4, max_tokens=1, prompt_tokens=10, max_price=MAX_UNIT_PRICE * UNITS)
    assert chain.decided_block(chain.tx(TA, affordable)).tx_results[0].code == 0
    assert chain.request(affordable.request_id).escrow == 11 * MAX_UNIT_PRICE * UNITS


@pytest.mark.parametrize("bad", [0, MAX_UNIT_PRICE + 1])
def test_genesis_refuses_a_price_out_of_bounds(tmp_path: Path, bad: int) -> None:
    with pytest.raises(GenesisError, match="unit prices"):
        Chain.start(tmp_path, genesis(PricingGenesis(unit_price=Amount(bad))))
    vote = PriceVote(NODES[0].public_key.address, Amount(bad))
    with pytest.raises(GenesisError, match="unit prices"):
        Chain.start(tmp_path / "votes", genesis(PricingGenesis(votes=(vote,))))


def test_export_carries_the_price_its_cycle_and_the_votes(chain: PricingChain, tmp_path: Path) -> None:
    assert chain.vote((NODES[3], 4_000), (NODES[2], 4_000)) == [(0, ""), (0, "")]
    chain.end_cycle()
    exported = chain.app.export_genesis().pricing
    assert exported.unit_price == 4_000 and exported.cycle == chain.ask(PRICE).cycle and len(exported.votes) == 2
    again = Chain.start(tmp_path / "again", genesis(exported))
    assert again.app.export_genesis().pricing == exported


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The home (keys `provider`: weight 40, `stranger`: none) and RPC URL of an embedded node making blocks."""
    (tmp_path / "config").mkdir()
    g = with_beacon(genesis())
    g.save(tmp_path / "config" / "genesis.json")
    keyring = Keyring(tmp_path / "keyring")
    for name, k in (("provider", NODES[3]), ("stranger", STRANGER)):
        keyring.import_mnemonic(name, Mnemonic("english").to_mnemonic(k.seed), "")
    embedded = EmbeddedNode(tmp_path, block_time=0.1, validators=beacon_validators(g))
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


def run(*args: str) -> Result:
    return CliRunner(env={"RACENET_PASSPHRASE": "", "RACENET_HOME": None}).invoke(cli, list(args))


def assert_error(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_price_vote_and_show_on_the_command_line(node: tuple[Path, str]) -> None:
    home, url = node
    args = ["--home", str(home), "--node", url]
    voted = run("price", "vote", "2uicon", "--from", "provider", *args)
    assert voted.exit_code == 0, voted.output
    assert "voted 2000 nicoin (0.000002 icon) per unit of compute in block" in voted.stdout
    shown = json.loads(run("price", "show", "--node", url, "--json").stdout)
    assert shown["price"]["price"] == GENESIS_PRICE
    assert [(v["price"], v["weight"]) for v in shown["votes"]["votes"]] == [(2_000, 40)]
    assert shown["votes"]["median"] == GENESIS_PRICE  # 2,000 holds 40 of 100
    assert {m["id"]: m["price_per_token"] for m in shown["models"]["models"]} == {
        MODEL: GENESIS_PRICE * UNITS,
        "big": GENESIS_PRICE * 7,
    }
    text = run("price", "show", "--node", url).stdout
    assert "unit price: 1000 nicoin (0.000001 icon) per unit of compute (set for cycle 0)" in text
    assert MODEL in text and "race1" in text
    assert_error(run("price", "vote", "5nicoin", "--from", "stranger", *args), "only a holder of Race weight")
    assert_error(run("price", "vote", "0", "--from", "provider", *args), "a unit price is 1 to 1000000000 nicoin")
    assert_error(run("price", "vote", "2icon", "--from", "provider", *args), "a unit price is 1 to")
    assert_error(run("price", "vote", "5 dollars", "--from", "provider", *args), "unknown unit")
    assert_error(run("price", "show", "--node", "http://127.0.0.1:9"), "cannot reach node")
