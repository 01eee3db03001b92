"""The gov module (whitepaper Appendices J, K): proposals with deposits, votes by Race weight, quorum, veto and
threshold, execution as the governance authority, and SetPower gone.

Race weights 10, 20, 30, 40 (total 100); nobody mines, so every tally keeps them. Voting periods are 3 blocks.
Every block checks every invariant (bank's supply, gov's deposits), so money is conserved throughout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import replace as dc
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result
from mnemonic import Mnemonic

from racenet.chain.app_state import AppState
from racenet.chain.authority import GOV_AUTHORITY, AuthorityMsg
from racenet.chain.codec import encode
from racenet.chain.errors import Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules import auth, bank, dummy, gov, inference, race, verification
from racenet.chain.modules.bank import Balance, BankGenesis, MsgSend
from racenet.chain.modules.gov import (
    GovGenesis,
    MsgDeposit,
    MsgSubmitProposal,
    MsgTrainingGrant,
    MsgVote,
    Proposal,
    ProposalStatus,
    Tally,
    VoteOption,
    decide,
    tally_votes,
)
from racenet.chain.modules.gov import module as gov_module
from racenet.chain.modules.inference import (
    MAX_UNITS_PER_TOKEN,
    InferenceGenesis,
    ModelEntry,
    MsgRegisterModel,
    MsgServeModels,
    MsgStartRequest,
    RequestAuth,
    ServerEntry,
    auth_sign_bytes,
)
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.modules.tokenomics.types import TRAINING_FUND
from racenet.chain.modules.training import MsgCreateGrantJob
from racenet.chain.scalars import Amount
from racenet.chain.tx import AnyMsg, VerifiedTx, build_tx, decode_envelope, decode_messages
from racenet.cli.main import cli
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.node.embedded import EmbeddedNode
from racenet.node.rpc_server import serve_rpc
from tests.chain import (
    CHAIN_ID,
    FEE,
    GENESIS_TIME,
    INITIAL_BALANCE,
    Chain,
    balances,
    beacon_validators,
    key,
    with_beacon,
)
from tests.test_crash import free_port
from tests.test_inference_chain import DEV, MODEL, PROMPT_HASH, TA, InferenceChain
from tests.test_training_chain import create_msg

NODES = [key(1), key(2), key(3), key(4)]
N1, N2, N3, N4 = NODES
WEIGHTS = [10, 20, 30, 40]
STRANGER = key(52)
GOV = gov.Params(min_deposit=Amount(1_000), deposit_blocks=5, voting_blocks=3)
FUND = 10**9
NEW_MODEL = "new-model"


def genesis(weights: dict[PrivateKey, int] | None = None, params: gov.Params = GOV) -> Genesis:
    """Four weighted nodes serving MODEL, a developer, a transfer agent, a stranger and a funded training fund."""
    weights = weights or dict(zip(NODES, WEIGHTS, strict=True))
    holders = list(weights)
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(weights.values())],
        app_state=AppState(
            bank=BankGenesis(
                balances=(*balances([*holders, DEV, TA, STRANGER]), Balance(TRAINING_FUND, FUND)),
            ),
            race=RaceGenesis(
                nodes=tuple(
                    RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
                    for i, (k, w) in enumerate(weights.items())
                )
            ),
            inference=InferenceGenesis(
                models=(ModelEntry(MODEL, 2),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"https://node{i}.example.com")
                    for i, k in enumerate(holders)
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(1_000)),
            gov=GovGenesis(params=params),
        ),
    )


class GovChain(InferenceChain):
    """An in-process chain with helpers to submit, deposit, vote and run a proposal to its end."""

    def submit(self, signer: PrivateKey, *msgs: Msg, deposit: int = GOV.min_deposit) -> tuple[int, int]:
        """Submit a proposal carrying `msgs`; (code, proposal id)."""
        proposal = MsgSubmitProposal("title", "why", tuple(AnyMsg(m.TYPE, encode(m)) for m in msgs), deposit)
        code, _ = self.run(signer, proposal)
        return code, int(self.app.gov.keeper.next_id.get(self.app.read_context())) - 1

    def open(self, signer: PrivateKey, *msgs: Msg, deposit: int = GOV.min_deposit) -> int:
        """Submit a proposal that must be accepted; its id."""
        code, proposal_id = self.submit(signer, *msgs, deposit=deposit)
        assert code == 0
        return proposal_id

    def vote(self, proposal_id: int, *votes: tuple[PrivateKey, VoteOption]) -> list[int]:
        """Every vote in one block; their codes."""
        txs = [self.tx(k, MsgVote(proposal_id, option)) for k, option in votes]
        codes = [r.code for r in self.decided_block(*txs).tx_results]
        for k, _ in votes:
            address = k.public_key.address
            self.sequences[address] = self.app.auth.keeper.account(self.app.read_context(), address).sequence
        return codes

    def proposal(self, proposal_id: int) -> Proposal:
        found = self.app.gov.keeper.proposals.get(self.app.read_context(), proposal_id)
        assert found is not None
        return found

    def finish(self, proposal_id: int) -> Proposal:
        """Run to the end of the proposal's voting period; no hook may fail (a failed execution is no hook failure)."""
        while self.app.height < self.proposal(proposal_id).voting_end:
            assert not [e for e in self.decided_block().events if e.type == "hook_failed"]
        return self.proposal(proposal_id)

    def passed(self, *msgs: Msg) -> Proposal:
        """A proposal carrying `msgs` that every node votes Yes on, run to its end."""
        proposal_id = self.open(N1, *msgs)
        assert self.vote(proposal_id, *((n, VoteOption.YES) for n in NODES)) == [0] * 4
        return self.finish(proposal_id)

    def params(self, module: Any) -> Any:
        return module.keeper.params.get(self.app.read_context())


def start(tmp_path: Path, weights: dict[PrivateKey, int] | None = None) -> GovChain:
    c = Chain.start(tmp_path, genesis(weights))
    return GovChain(c.app, c.driver)


@pytest.fixture
def chain(tmp_path: Path) -> GovChain:
    return start(tmp_path)


def start_msg(chain: GovChain, n: int, model: str) -> MsgStartRequest:
    """A developer's request to `model`, sent by the transfer agent."""
    request_id = hashlib.sha256(f"gov request {n}".encode()).digest()
    fields: dict[str, Any] = dict(
        request_id=request_id,
        developer=DEV.public_key.address,
        model=model,
        prompt_tokens=20,
        max_tokens=100,
        max_price_per_token=10**6,
        prompt_hash=PROMPT_HASH,
        expiry_height=chain.app.height + 10,
    )
    auth = RequestAuth(chain_id=CHAIN_ID, transfer_agent=TA.public_key.address, **fields)
    return MsgStartRequest(
        **fields, signer_key=DEV.public_key.raw, signature=DEV.sign(auth_sign_bytes(auth)), api_key_id=b""
    )


def test_a_parameter_changed_by_proposal_takes_effect(chain: GovChain) -> None:
    fees = dataclasses.replace(chain.params(chain.app.bank), min_fee=Amount(2_000))
    before = chain.balance(N1)
    proposal = chain.passed(bank.MsgUpdateParams(fees))
    assert proposal.status == ProposalStatus.PASSED and proposal.tally == Tally(yes=100, total_weight=100)
    assert chain.params(chain.app.bank).min_fee == 2_000
    assert chain.balance(N1) == before - 2 * FEE  # the deposit came back; the submit and the vote paid fees
    assert chain.app.gov.keeper.votes.items(chain.app.read_context()) == []  # votes go once counted


def test_race_params_apply_from_the_next_cycle_and_its_phase_lengths_never_change(chain: GovChain) -> None:
    params = chain.params(chain.app.race)
    proposal = chain.passed(race.MsgUpdateParams(dataclasses.replace(params, weight_cap_percent=500)))
    assert proposal.status == ProposalStatus.PASSED
    assert chain.params(chain.app.race).weight_cap_percent == 1000  # the running cycle keeps its rules
    [scheduled] = chain.app.export_genesis().race.next_params  # an export keeps the scheduled change
    assert scheduled.params.weight_cap_percent == 500
    schedule = chain.app.race.keeper.schedule(chain.app.read_context())
    next_cycle = schedule.cycle_start(schedule.cycle(chain.app.height) + 1)
    while chain.app.height < next_cycle:
        chain.decided_block()
    assert chain.params(chain.app.race).weight_cap_percent == 500
    failed = chain.passed(race.MsgUpdateParams(dataclasses.replace(params, race_blocks=params.race_blocks + 1)))
    assert failed.status == ProposalStatus.FAILED and "fixed at genesis" in failed.outcome


def test_a_model_registered_by_proposal_becomes_routable(chain: GovChain) -> None:
    serve = MsgServeModels((MODEL, NEW_MODEL), "https://node.example.com")
    assert chain.run(N1, serve)[0] == Code.NOT_FOUND  # nobody can serve a model that is not registered
    assert chain.run(TA, start_msg(chain, 1, NEW_MODEL))[0] == Code.NOT_FOUND
    assert chain.submit(N1, MsgRegisterModel(NEW_MODEL, MAX_UNITS_PER_TOKEN + 1))[0] == Code.INVALID_MESSAGE
    assert chain.passed(MsgRegisterModel(NEW_MODEL, 5)).status == ProposalStatus.PASSED
    models = chain.app.inference.keeper.registered_models(chain.app.read_context())
    assert (NEW_MODEL, 5) in models
    for node in NODES[1:]:
        assert chain.run(node, serve) == (0, "")
    msg = start_msg(chain, 2, NEW_MODEL)
    assert chain.run(TA, msg) == (0, "")
    request = chain.request(msg.request_id)
    assert request.executor in {n.public_key.address for n in NODES[1:]}  # routed to a node serving it
    assert request.price_per_token == 5 * 1_000


def test_a_training_grant_by_proposal_pays_from_the_fund(chain: GovChain) -> None:
    recipient = key(77).public_key.address
    assert chain.passed(MsgTrainingGrant(recipient, 4_000)).status == ProposalStatus.PASSED
    assert chain.balance(recipient) == 4_000 and chain.balance(TRAINING_FUND) == FUND - 4_000


def test_a_training_job_funded_by_proposal_escrows_from_the_fund_and_refunds_it(chain: GovChain) -> None:
    job = dataclasses.replace(create_msg(rounds=1), budget=5_000)
    assert chain.passed(MsgCreateGrantJob(job)).status == ProposalStatus.PASSED
    created = chain.app.training.keeper.jobs.get(chain.app.read_context(), 1)
    assert created is not None and created.creator == GOV_AUTHORITY and created.budget == 5_000
    assert chain.balance(TRAINING_FUND) == FUND - 5_000
    for _ in range(10):  # nobody joins: the job ends at its start and the fund gets its budget back
        chain.decided_block()
    assert chain.balance(TRAINING_FUND) == FUND
    assert chain.run(DEV, MsgCreateGrantJob(job))[0] == Code.UNAUTHORIZED


def authority_messages(chain: GovChain) -> list[Msg]:
    """One instance of every message only governance may send."""
    msgs: list[Msg] = []
    for cls in chain.app.registry.values():
        if not issubclass(cls, AuthorityMsg):
            continue
        if cls is MsgRegisterModel:
            msgs.append(MsgRegisterModel(NEW_MODEL, 1))
        elif cls is MsgTrainingGrant:
            msgs.append(MsgTrainingGrant(STRANGER.public_key.address, 1))
        elif cls is MsgCreateGrantJob:
            msgs.append(MsgCreateGrantJob(create_msg()))
        else:
            module = chain.app.routes[cls.TYPE]
            msgs.append(cls(params=module.keeper.params.get(chain.app.read_context())))  # type: ignore[call-arg]
    return msgs


def test_governance_messages_from_anyone_but_gov_are_refused(chain: GovChain) -> None:
    msgs = authority_messages(chain)
    assert {m.TYPE for m in msgs} >= {
        f"{m}/UpdateParams"
        for m in ("auth", "bank", "race", "beacon", "inference", "verification", "dummy", "gov", "tokenomics")
    }
    for signer in (N4, STRANGER):  # the heaviest weight holder is no authority either
        for msg in msgs:
            assert chain.run(signer, msg)[0] == Code.UNAUTHORIZED, msg.TYPE
    bank_msg = bank.MsgSend(N1.public_key.address, 1)
    assert chain.submit(N1, bank_msg)[0] == Code.UNKNOWN_MESSAGE  # a proposal carries only governance messages
    bad = dataclasses.replace(chain.params(chain.app.gov), threshold_ppm=400_000)
    assert chain.submit(N1, gov.MsgUpdateParams(bad))[0] == Code.INVALID_MESSAGE  # validated before set


def test_deposits_are_refunded_unless_vetoed_as_spam_then_burned(chain: GovChain) -> None:
    supply = chain.app.bank.keeper.supply.get(chain.app.read_context())
    proposal_id = chain.open(STRANGER, deposit=600)
    assert chain.proposal(proposal_id).status == ProposalStatus.DEPOSIT
    assert chain.vote(proposal_id, (N1, VoteOption.YES)) == [Code.TOO_EARLY]
    assert chain.run(DEV, MsgDeposit(proposal_id, 400)) == (0, "")  # reaches min_deposit: voting starts
    assert chain.proposal(proposal_id).status == ProposalStatus.VOTING
    assert chain.vote(proposal_id, (N3, VoteOption.NO_WITH_VETO), (N4, VoteOption.NO_WITH_VETO)) == [0, 0]
    vetoed = chain.finish(proposal_id)
    assert vetoed.status == ProposalStatus.VETOED and vetoed.total_deposit == 1_000
    assert chain.balance(STRANGER) == INITIAL_BALANCE - 600 - FEE
    assert chain.balance(DEV) == INITIAL_BALANCE - 400 - FEE
    assert chain.app.bank.keeper.supply.get(chain.app.read_context()) == supply - 1_000
    proposal_id = chain.open(STRANGER)
    assert chain.vote(proposal_id, (N3, VoteOption.NO), (N4, VoteOption.NO_WITH_VETO)) == [0, 0]
    assert chain.finish(proposal_id).status == ProposalStatus.VETOED  # veto 40 of 70 > 33.4%
    proposal_id = chain.open(STRANGER)
    assert chain.vote(proposal_id, (N1, VoteOption.NO_WITH_VETO), (N4, VoteOption.NO)) == [0, 0]
    assert chain.finish(proposal_id).status == ProposalStatus.REJECTED  # veto 10 of 50: only rejected
    assert chain.balance(STRANGER) == INITIAL_BALANCE - 600 - 1_000 - 3 * FEE  # the last deposit came back


def test_a_deposit_that_never_reaches_the_minimum_is_refunded_and_dropped(chain: GovChain) -> None:
    proposal_id = chain.open(STRANGER, deposit=999)
    for _ in range(GOV.deposit_blocks):
        chain.decided_block()
    assert chain.app.gov.keeper.proposals.get(chain.app.read_context(), proposal_id) is None
    assert chain.balance(STRANGER) == INITIAL_BALANCE - FEE
    assert chain.run(STRANGER, MsgDeposit(proposal_id, 1))[0] == Code.NOT_FOUND


def test_without_quorum_a_proposal_is_rejected_and_refunded(chain: GovChain) -> None:
    proposal_id = chain.open(STRANGER)
    assert chain.vote(proposal_id, (N1, VoteOption.YES), (N2, VoteOption.YES)) == [0, 0]  # 30 of 100 < 33.4%
    rejected = chain.finish(proposal_id)
    assert rejected.status == ProposalStatus.REJECTED and rejected.outcome.startswith("quorum not met")
    assert chain.balance(STRANGER) == INITIAL_BALANCE - FEE


def test_a_coalition_below_the_threshold_cannot_pass(chain: GovChain) -> None:
    fees = dataclasses.replace(chain.params(chain.app.bank), min_fee=Amount(2_000))
    proposal_id = chain.open(N1, bank.MsgUpdateParams(fees))
    assert chain.vote(proposal_id, (N2, VoteOption.YES), (N3, VoteOption.YES)) == [0, 0]
    assert chain.vote(proposal_id, (N1, VoteOption.NO), (N4, VoteOption.NO)) == [0, 0]  # 50 yes of 100: not above
    assert chain.finish(proposal_id).status == ProposalStatus.REJECTED
    assert chain.params(chain.app.bank).min_fee == 1_000
    proposal_id = chain.open(N1, bank.MsgUpdateParams(fees))
    assert chain.vote(proposal_id, (N4, VoteOption.YES), (N1, VoteOption.NO), (N3, VoteOption.ABSTAIN)) == [0] * 3
    assert chain.vote(proposal_id, (N1, VoteOption.YES)) == [0]  # a vote changes until the period ends
    assert chain.finish(proposal_id).tally == Tally(yes=50, abstain=30, total_weight=100)
    assert chain.params(chain.app.bank).min_fee == 2_000  # 50 of the 50 that did not abstain


def test_an_account_without_race_weight_cannot_vote(chain: GovChain) -> None:
    proposal_id = chain.open(STRANGER)
    assert chain.vote(proposal_id, (STRANGER, VoteOption.YES), (DEV, VoteOption.NO)) == [Code.UNAUTHORIZED] * 2
    assert chain.vote(proposal_id + 1, (N1, VoteOption.YES)) == [Code.NOT_FOUND]


def test_splitting_weight_over_sybil_keys_gives_the_same_say(tmp_path: Path) -> None:
    tallies = []
    for name, holders in (
        ("whole", {N1: 10, N2: 20, N3: 30, N4: 40}),
        ("split", {N1: 10, N2: 20, N3: 30, key(5): 10, key(6): 10, key(7): 20}),
    ):
        chain = start(tmp_path / name, holders)
        proposal_id = chain.open(STRANGER)
        heavy = [(k, VoteOption.YES) for k in holders if k not in (N1, N2, N3)]
        assert chain.vote(proposal_id, *heavy, (N3, VoteOption.NO)) == [0] * (len(heavy) + 1)
        tallies.append(chain.finish(proposal_id).tally)
        chain.app.close()
    assert tallies[0] == tallies[1] == Tally(yes=40, no=30, total_weight=100)
    whole, split = tally_votes([(VoteOption.YES, 40)], 100), tally_votes([(VoteOption.YES, 1)] * 40, 100)
    assert whole == split and decide(whole, GOV) == decide(split, GOV)


def test_a_failing_execution_changes_nothing_and_never_raises_out_of_end_block(chain: GovChain) -> None:
    fees = dataclasses.replace(chain.params(chain.app.bank), min_fee=Amount(2_000))
    too_much = MsgTrainingGrant(STRANGER.public_key.address, FUND + 1)
    before = chain.balance(N1)
    failed = chain.passed(bank.MsgUpdateParams(fees), too_much)
    assert failed.status == ProposalStatus.FAILED and "has 1000000000 nicoin" in failed.outcome
    assert chain.params(chain.app.bank).min_fee == 1_000  # all of a proposal's messages or none
    assert chain.balance(STRANGER) == INITIAL_BALANCE and chain.balance(N1) == before - 2 * FEE  # refunded
    height = chain.app.height
    chain.decided_block()
    assert chain.app.height == height + 1  # the chain goes on


def test_set_power_is_gone(chain: GovChain) -> None:
    @dataclass(frozen=True)
    class MsgSetPower(Msg):
        TYPE: ClassVar[str] = "validators/SetPower"
        pub_key: bytes
        power: int

    raw = build_tx(N1, CHAIN_ID, 0, FEE, [MsgSetPower(key(101).public_key.raw, 5)])
    assert chain.app.check_tx(raw).code == Code.UNKNOWN_MESSAGE
    assert not chain.app.validators.messages()
    assert "validators/SetPower" not in chain.app.registry and "validators/authority" not in chain.app.query_routes


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The home (keys `n3`, `n4`: weights 30 and 40; `stranger`: none) and RPC URL of an embedded node making
    blocks, whose deposit and voting periods last 200 and 40 blocks."""
    (tmp_path / "config").mkdir()
    g = with_beacon(genesis(params=dataclasses.replace(GOV, deposit_blocks=200, voting_blocks=40)))
    g.save(tmp_path / "config" / "genesis.json")
    keyring = Keyring(tmp_path / "keyring")
    for name, k in (("n3", N3), ("n4", N4), ("stranger", STRANGER)):
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


def test_gov_submit_deposit_vote_and_show_on_the_command_line(node: tuple[Path, str]) -> None:
    home, url = node
    args = ["--home", str(home), "--node", url]
    changes = home / "changes.json"
    changes.write_text('{"min_fee": 2000}')
    submitted = run(
        "gov", "submit", "params", "bank", str(changes), "--from", "stranger", "--deposit", "600nicoin", *args
    )
    assert submitted.exit_code == 0, submitted.output
    assert "submitted as proposal 1 in block" in submitted.stdout
    assert run("gov", "deposit", "1", "400nicoin", "--from", "stranger", *args).exit_code == 0
    for voter in ("n3", "n4"):
        voted = run("gov", "vote", "1", "yes", "--from", voter, *args)
        assert voted.exit_code == 0 and "voted yes on proposal 1" in voted.stdout, voted.output
    shown = json.loads(run("gov", "show", "1", "--node", url, "--json").stdout)
    assert shown["proposal"]["tally"]["yes"] == 70 and shown["proposal"]["proposal"]["status"] == "voting"
    deadline = time.monotonic() + 30
    while json.loads(run("gov", "show", "1", "--node", url, "--json").stdout)["proposal"]["proposal"]["status"] == (
        "voting"
    ):
        assert time.monotonic() < deadline, "the voting period never ended"
        time.sleep(0.2)
    text = run("gov", "show", "1", "--node", url).stdout
    assert "[passed]" in text and 'runs bank/UpdateParams {"params": {"fee_per_byte": 2' in text
    assert "final tally: yes 70, no 0, abstain 0, no with veto 0 (of 100 Race weight)" in text
    listed = json.loads(run("gov", "show", "--node", url, "--json").stdout)
    assert [p["status"] for p in listed["proposals"]["proposals"]] == ["passed"]
    model = run("gov", "submit", "model", NEW_MODEL, "5", "--from", "n4", "--json", *args)
    assert model.exit_code == 0 and json.loads(model.stdout)["proposal_id"] == 2, model.output
    assert_error(run("gov", "vote", "2", "no", "--from", "stranger", *args), "only a holder of Race weight")
    assert_error(run("gov", "submit", "params", "nosuch", "{}", "--from", "n4", *args), "has no params")
    assert_error(run("gov", "submit", "params", "bank", '{"bogus": 1}', "--from", "n4", *args), "bogus")
    assert_error(run("gov", "submit", "params", "gov", '{"quorum_ppm": 0}', "--from", "n4", *args), "quorum_ppm")
    assert_error(run("gov", "submit", "params", "bank", "[1", "--from", "n4", *args), "neither a readable JSON")
    assert_error(run("gov", "submit", "model", NEW_MODEL, "600000", "--from", "n4", *args), "units of compute")
    assert_error(run("gov", "submit", "grant", "race1xyz", "5icon", "--from", "n4", *args), "race1")
    assert_error(run("gov", "submit", "text", "--from", "n4", *args), "needs --title")
    assert_error(run("gov", "deposit", "1", "5 dollars", "--from", "n4", *args), "unknown unit")
    assert_error(run("gov", "show", "99", "--node", url), "no proposal 99")
    assert_error(run("gov", "show", "--node", "http://127.0.0.1:9"), "cannot reach node")


def test_lowered_transaction_limits_also_judge_transactions_decoded_before(tmp_path: Path) -> None:
    """A node that decoded (and cached) a transaction under the old limits judges it by the new ones, like a node
    that sees it for the first time: otherwise a limit lowered by governance would split the app hash."""
    chain = start(tmp_path)
    chain.passed(auth.MsgUpdateParams(dataclasses.replace(chain.params(chain.app.auth), max_msgs_per_tx=4)))
    sequence = chain.app.auth.keeper.account(chain.app.read_context(), N1.public_key.address).sequence
    raw = build_tx(N1, CHAIN_ID, sequence, FEE, [MsgSend(STRANGER.public_key.address, 1)] * 20)
    assert chain.app.check_tx(raw).code == Code.MALFORMED_TX
    envelope = decode_envelope(raw, chain.app.registry, 65_536, 64)
    chain.app.verified_cache.put(raw, VerifiedTx(envelope, decode_messages(envelope, chain.app.registry)))
    assert chain.app.check_tx(raw).code == Code.MALFORMED_TX


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda c: race.MsgUpdateParams(dc(c.params(c.app.race), validators_per_participant=10**5)),
            id="huge committees",
        ),
        pytest.param(
            lambda c: inference.MsgUpdateParams(dc(c.params(c.app.inference), receipt_retention_blocks=2**64 - 1)),
            id="endless receipts",
        ),
        pytest.param(
            lambda c: inference.MsgUpdateParams(dc(c.params(c.app.inference), expiry_blocks=10**12)),
            id="endless expiry",
        ),
        pytest.param(
            lambda c: dummy.MsgUpdateParams(dc(c.params(c.app.dummy), commitment_blocks=2**63)),
            id="endless commitments",
        ),
        pytest.param(
            lambda c: verification.MsgUpdateParams(dc(c.params(c.app.verification), dispute_blocks=2**63)),
            id="endless disputes",
        ),
        pytest.param(lambda c: bank.MsgUpdateParams(dc(c.params(c.app.bank), min_fee=Amount(10**12))), id="priced out"),
        pytest.param(
            lambda c: gov.MsgUpdateParams(dc(c.params(c.app.gov), min_deposit=Amount(10**18))), id="unreachable deposit"
        ),
        pytest.param(
            lambda c: gov.MsgUpdateParams(dc(c.params(c.app.gov), quorum_ppm=1_000_000)), id="absentees block"
        ),
        pytest.param(lambda c: gov.MsgUpdateParams(dc(c.params(c.app.gov), veto_ppm=1)), id="anyone vetoes"),
        pytest.param(lambda c: gov.MsgUpdateParams(dc(c.params(c.app.gov), voting_blocks=1)), id="no time to vote"),
    ],
)
def test_a_proposal_that_would_disable_the_chain_or_governance_is_refused_at_submission(
    chain: GovChain, change: Callable[[GovChain], Msg]
) -> None:
    """Params a majority could pass but that would halt blocks, lock escrows for good, price every transaction out,
    or shut governance (or hand it to a few) are refused by validation before any vote."""
    code, _ = chain.submit(N1, change(chain))
    assert code == Code.INVALID_MESSAGE


def test_the_settlement_windows_cannot_change(chain: GovChain) -> None:
    """A cycle settles exactly check_blocks + dispute_blocks after it ends: a new sum would skip one for good."""
    shorter = dc(chain.params(chain.app.verification), check_blocks=1, dispute_blocks=1)
    proposal = chain.passed(verification.MsgUpdateParams(shorter))
    assert proposal.status == ProposalStatus.FAILED and "fixed at genesis" in proposal.outcome
    assert chain.params(chain.app.verification).check_blocks != 1


def test_a_proposal_is_submitted_with_a_tenth_of_the_minimum_deposit(chain: GovChain) -> None:
    """Spam pays up front: an empty deposit is refused, a tenth of min_deposit opens the deposit period."""
    least = -(-int(GOV.min_deposit) // 10)
    assert chain.submit(N1, deposit=least - 1)[0] == Code.INSUFFICIENT_FUNDS
    assert chain.submit(N1, deposit=least)[0] == 0


def test_the_proposals_query_answers_only_the_latest_ids(chain: GovChain, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its cost stays bounded however many proposals were ever made; older ones are read one by one."""
    monkeypatch.setattr(gov_module, "PROPOSALS_SHOWN", 2)
    ids = [chain.open(N1) for _ in range(3)]
    shown = chain.app.gov.keeper.query_proposals(chain.app.read_context(), None).proposals
    assert [p.id for p in shown] == ids[1:]
    assert chain.proposal(ids[0]).id == ids[0]
