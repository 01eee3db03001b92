"""Every message type and every hook against extreme integers and random fields.

Hypothesis writes blocks of messages from every kind of sender (registered nodes, a developer, a
transfer agent, a proposer without Race weight, an API key's gateway) whose integers are 0, 1, 2**64 - 1, 2**64 or
random, and whose other fields are either plausible (the right executor, a real proof, an open
request) or random. The chain runs them as decided blocks (as a Byzantine proposer could force)
through whole Race cycles and request expiries. After every block: no exception left the App,
every rejection has a clear code (never `internal`), no hook item fails, every module invariant holds, validator power
stays within CometBFT's bound, and a second App fed the same bytes has the same app hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from racenet.chain.app_state import AppState
from racenet.chain.codec import encode
from racenet.chain.errors import Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules import gov
from racenet.chain.modules.bank import BankGenesis, MsgSend
from racenet.chain.modules.inference import (
    InferenceGenesis,
    ModelEntry,
    MsgAuthorizeKey,
    MsgFinishRequest,
    MsgReassignRequest,
    MsgRegisterModel,
    MsgRevokeKey,
    MsgServeModels,
    MsgStartRequest,
    RequestAuth,
    ServerEntry,
    api_key_id,
    auth_sign_bytes,
)
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.inference.types import MAX_SPEND_LIMIT
from racenet.chain.modules.pricing import MsgVotePrice, PricingGenesis
from racenet.chain.modules.race import (
    Leaf,
    MsgCommitProof,
    MsgRegisterNode,
    MsgReveal,
    MsgVote,
    Phase,
    ProofTree,
    RaceGenesis,
    RaceNode,
    register_node_msg,
)
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.validators import MAX_TOTAL_POWER
from racenet.chain.scalars import MAX_AMOUNT, Amount
from racenet.chain.tx import TX_VERSION, AnyMsg, SignedTx, TxBody, sign_bytes
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, Chain, balances, key

MODEL = "m"
NODES = [key(1), key(2), key(3)]
CONSENSUS = [key(101), key(102), key(103)]
DEV, TA, PROPOSER, OTHER = key(50), key(51), key(60), key(52)
SIGNERS = [*NODES, DEV, TA, PROPOSER, OTHER]
KEY_ID = api_key_id(b"hostile test key")
TOO_BIG = 2**64
"""Cannot be encoded: such a field is sent as the 10-byte varint of 2**64, which decoding rejects."""
EXTREMES = [0, 1, MAX_AMOUNT, TOO_BIG]
small = st.integers(0, 40)
ints = st.one_of(small, small, st.sampled_from(EXTREMES), st.integers(0, MAX_AMOUNT))
MAX_VARINT, OVER_VARINT = b"\xff" * 9 + b"\x01", b"\x80" * 9 + b"\x02"


def hostile_genesis() -> Genesis:
    """A 5-block Race cycle, a 4-block request expiry, and a model that costs 1 nicoin per token."""
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(c.public_key.raw, 10) for c in CONSENSUS],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*NODES, DEV, TA, PROPOSER], 10**15)),
            race=RaceGenesis(
                params=RaceParams(
                    race_blocks=4,
                    reveal_blocks=2,
                    vote_blocks=1,
                    escalation_blocks=1,
                    sample_size=2,
                    verdict_table=(0, 0, 0),
                ),
                nodes=tuple(
                    RaceNode(k.public_key.address, c.public_key.raw, 10) for k, c in zip(NODES, CONSENSUS, strict=True)
                ),
            ),
            inference=InferenceGenesis(
                params=InferenceParams(
                    max_tokens=MAX_AMOUNT,
                    max_prompt_tokens=MAX_AMOUNT,
                    expiry_blocks=4,
                    max_auth_blocks=MAX_AMOUNT,
                    allow_private_endpoints=True,
                ),
                models=(ModelEntry(MODEL, 1),),
                servers=tuple(ServerEntry(k.public_key.address, (MODEL,), "http://127.0.0.1:9") for k in NODES),
            ),
            pricing=PricingGenesis(unit_price=Amount(1)),
            gov=gov.GovGenesis(params=gov.Params(min_deposit=Amount(1), deposit_blocks=2, voting_blocks=2)),
        ),
    )


@dataclass
class Action:
    """One message to build against the chain's state when its block is written."""

    kind: str
    signer: int
    numbers: list[int]
    pick: int
    flag: bool


actions = st.builds(
    Action,
    kind=st.sampled_from(
        [
            "send",
            "gov",
            "gov",
            "register",
            "race",
            "race",
            "serve",
            "authorize",
            "revoke",
            "start",
            "reassign",
            "finish",
            "price",
        ]
    ),
    signer=st.integers(0, len(SIGNERS) - 1),
    numbers=st.lists(ints, min_size=3, max_size=3),
    pick=st.integers(0, 7),
    flag=st.sampled_from([True, True, True, False]),
)
blocks = st.lists(st.lists(actions, max_size=4), min_size=6, max_size=14)


@dataclass
class World:
    """The chain under test plus what the test remembers to build plausible messages."""

    chain: Chain
    trees: dict[bytes, ProofTree] = field(default_factory=dict)
    requests: list[bytes] = field(default_factory=list)
    made: int = 0

    def ctx(self) -> Any:
        return self.chain.app.read_context()

    def cycle(self) -> int:
        return int(self.chain.app.race.keeper.schedule(self.ctx()).cycle(self.chain.app.height + 1))

    def phase(self) -> Phase:
        return self.chain.app.race.keeper.schedule(self.ctx()).phase(self.chain.app.height + 1)

    def message(self, a: Action) -> tuple[PrivateKey, Msg]:
        """The signer and message an action describes; with the flag, the plausible signer and fields."""
        n0 = a.numbers[0]
        signer = SIGNERS[a.signer]
        if a.kind == "send":
            return signer, MsgSend(SIGNERS[a.pick % len(SIGNERS)].public_key.address, n0)
        if a.kind == "gov":
            return self.gov_step(a)
        if a.kind == "register":
            if a.flag:
                return signer, register_node_msg(CONSENSUS[a.pick % 3], CHAIN_ID, signer.public_key.address)
            return signer, MsgRegisterNode(hashlib.sha256(bytes([a.pick])).digest(), bytes(64))
        if a.kind == "race":
            return self.race_step(a)
        if a.kind == "serve":
            return signer, MsgServeModels((MODEL,) if a.flag else ("x" * (1 + a.pick),), "http://127.0.0.1:9")
        if a.kind == "authorize":
            gateway = (TA if a.flag else signer).public_key.address
            authorize = MsgAuthorizeKey(
                key_id=KEY_ID if a.flag else bytes(32), spend_limit=n0, expiry_height=a.numbers[1], gateways=(gateway,)
            )
            return DEV if a.flag else signer, authorize
        if a.kind == "revoke":
            return DEV if a.flag else signer, MsgRevokeKey(KEY_ID)
        if a.kind == "start":
            return TA if a.flag else signer, self.start(a)
        if a.kind == "price":
            return NODES[a.signer % 3] if a.flag else signer, MsgVotePrice(n0)
        return self.request_step(a)

    def race_step(self, a: Action) -> tuple[PrivateKey, Msg]:
        """What the phase asks of a node (commit, reveal or vote), with its counts taken from the action."""
        n0, n1, n2 = a.numbers
        node = NODES[a.signer % 3] if a.flag else SIGNERS[a.signer]
        address, race = node.public_key.address, self.chain.app.race.keeper
        phase, cycle = self.phase(), self.cycle() if a.flag else n2
        if phase == Phase.REVEAL:
            tree = self.trees.get(address)
            committed = race.commitments.get(self.ctx(), (cycle, address))
            if a.flag and tree is not None and committed is not None and committed.root == tree.root:
                return node, MsgReveal(cycle, tree.open(race.challenged(self.ctx(), cycle, address)))
            return node, MsgReveal(cycle, (Leaf(n0, n1, (bytes(32),) * (a.pick % 3)),))
        if phase in (Phase.VOTE, Phase.ESCALATE):
            participant = NODES[a.pick % 3].public_key.address
            assigned = race.assigned(self.ctx(), cycle, participant)
            voter = next((k for k in NODES if k.public_key.address in assigned), node) if a.flag else node
            failed = tuple(range(n0 % 300)) if a.pick % 2 else (n0, n1)
            return voter, MsgVote(cycle=cycle, participant=participant, failed=failed)
        if a.flag and a.pick % 2:
            tree = ProofTree(node.public_key.raw, list(range(1 + n1 % 5)))
            self.trees[address] = tree
            return node, MsgCommitProof(cycle, tree.root, tree.count)
        return node, MsgCommitProof(cycle, hashlib.sha256(b"root").digest(), n1)

    def gov_step(self, a: Action) -> tuple[PrivateKey, Msg]:
        """A proposal (a params change, a model, a grant or text), a deposit or a node's vote; with the flag, on
        the latest proposal."""
        n0, n1, n2 = a.numbers
        signer = SIGNERS[a.signer]
        proposal_id = int(self.chain.app.gov.keeper.next_id.get(self.ctx())) - 1 if a.flag else n0
        if a.pick % 4 == 0:
            params = gov.Params(min_deposit=Amount(n0), deposit_blocks=n1, voting_blocks=n2)
            carried = {
                0: (gov.MsgUpdateParams(params),),
                1: (MsgRegisterModel("x" * (1 + a.pick), n1),),
                2: (gov.MsgTrainingGrant(DEV.public_key.address, n1),),
                3: (),
            }[a.signer % 4]
            messages = tuple(AnyMsg(m.TYPE, encode(m)) for m in carried)
            return signer, gov.MsgSubmitProposal("t", "s", messages, n2 % 3 if a.flag else n2)
        if a.pick % 4 == 1:
            return signer, gov.MsgDeposit(proposal_id, 1 if a.flag else n1)
        voter = NODES[a.signer % 3] if a.flag else signer
        return voter, gov.MsgVote(proposal_id, list(gov.VoteOption)[a.pick % 4])

    def request_step(self, a: Action) -> tuple[PrivateKey, Msg]:
        """A Reassign (by the request's transfer agent) or a Finish (by its executor) of a known request."""
        n0 = a.numbers[0]
        known = self.chain.app.inference.keeper.requests.keys(self.ctx()) if a.flag else self.requests
        request_id = known[a.pick % len(known)] if known else bytes(32)
        request = self.chain.app.inference.keeper.requests.get(self.ctx(), request_id)
        if a.kind == "reassign":
            signer = TA if a.flag else SIGNERS[a.signer]
            return signer, MsgReassignRequest(request_id)
        by_address = {k.public_key.address: k for k in SIGNERS}
        executor = by_address.get(request.executor, NODES[0]) if request and a.flag else SIGNERS[a.signer]
        return executor, MsgFinishRequest(request_id=request_id, completion_tokens=n0, response_hash=bytes(32))

    def start(self, a: Action) -> MsgStartRequest:
        """A Start paid by the API key (its gateway sends it) or signed by the developer, with extreme counts."""
        n0, n1, n2 = a.numbers
        if a.pick % 2:
            return MsgStartRequest(
                request_id=b"",
                developer=DEV.public_key.address,
                model=MODEL,
                prompt_tokens=n0,
                max_tokens=n1,
                max_price_per_token=0,
                prompt_hash=bytes(32),
                expiry_height=0,
                signer_key=b"",
                signature=b"",
                api_key_id=KEY_ID,
            )
        self.made += 1
        request_id = hashlib.sha256(self.made.to_bytes(8, "big")).digest()
        self.requests.append(request_id)
        expiry = self.chain.app.height + 1 + n2 % 8 if a.flag else n2
        max_price = 10**9 if a.flag else n2  # the highest unit price, or an extreme one
        auth = RequestAuth(
            chain_id=CHAIN_ID,
            request_id=request_id,
            developer=DEV.public_key.address,
            transfer_agent=TA.public_key.address,
            model=MODEL,
            prompt_tokens=n0,
            max_tokens=n1,
            max_price_per_token=max_price,
            prompt_hash=bytes(32),
            expiry_height=expiry,
        )
        return MsgStartRequest(
            request_id=request_id,
            developer=DEV.public_key.address,
            model=MODEL,
            prompt_tokens=n0,
            max_tokens=n1,
            max_price_per_token=max_price,
            prompt_hash=bytes(32),
            expiry_height=expiry,
            signer_key=DEV.public_key.raw,
            signature=DEV.sign(auth_sign_bytes(auth)),
            api_key_id=b"",
        )


def signed_tx(signer: PrivateKey, sequence: int, msg: Msg, too_big: bool) -> bytes:
    """A signed tx carrying `msg`; with `too_big`, its largest integer becomes the varint of 2**64."""
    raw = encode(msg)
    if too_big:
        raw = raw.replace(MAX_VARINT, OVER_VARINT, 1)
    body = TxBody(CHAIN_ID, sequence, FEE, "", (AnyMsg(msg.TYPE, raw),))
    pub = signer.public_key.raw
    return encode(SignedTx(TX_VERSION, body, pub, signer.sign(sign_bytes(pub, body))))


def clamp(a: Action) -> tuple[Action, bool]:
    """The action with 2**64 replaced by 2**64 - 1 (patched back in the bytes), and whether it had one."""
    too_big = TOO_BIG in a.numbers
    return Action(a.kind, a.signer, [min(x, MAX_AMOUNT) for x in a.numbers], a.pick, a.flag), too_big


def build_block(world: World, plan: list[Action]) -> list[bytes]:
    """The block's tx bytes, each signer's sequences continuing from the chain's."""
    sequences: dict[bytes, int] = {}
    txs = []
    for action in plan:
        clamped, too_big = clamp(action)
        signer, msg = world.message(clamped)
        address = signer.public_key.address
        if address not in sequences:
            sequences[address] = world.chain.app.auth.keeper.account(world.ctx(), address).sequence
        if too_big and MAX_VARINT not in encode(msg):
            too_big = False
        txs.append(signed_tx(signer, sequences[address], msg, too_big))
        sequences[address] += 1
    return txs


def check_block(world: World, twin: Chain, txs: list[bytes]) -> set[str]:
    """Run one block on both chains and assert the properties; the block's hook failures, if any."""
    for tx in txs:
        assert world.chain.app.check_tx(tx).code != Code.INTERNAL
    result = world.chain.decided_block(*txs)
    assert result.app_hash == twin.decided_block(*txs).app_hash
    codes = [r.code for r in result.tx_results]
    assert Code.INTERNAL not in codes and all(c in Code._value2member_map_ for c in codes), codes
    for update in result.validator_updates:
        assert 0 <= update.power <= MAX_TOTAL_POWER
    validator_set = world.chain.app.validators.keeper.validator_set(world.ctx())
    assert sum(v.power for v in validator_set) <= MAX_TOTAL_POWER
    return {dict(e.attributes)["item"] for e in result.events if e.type == "hook_failed"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plan=blocks)
def test_no_input_breaks_a_hook_or_an_invariant(tmp_path_factory: Any, plan: list[list[Action]]) -> None:
    base: Path = tmp_path_factory.mktemp("hostile")
    world = World(Chain.start(base / "a", hostile_genesis()))
    twin = Chain.start(base / "b", hostile_genesis())
    try:
        for block in plan:
            assert check_block(world, twin, build_block(world, block)) == set(), "a hook item failed (C1)"
    finally:
        world.chain.app.close()
        twin.app.close()


def test_the_race_and_expiry_hooks_run_in_these_blocks(tmp_path: Path) -> None:
    """The schedule above does reach every hook: seeds, a tally and an expiry within a few blocks."""
    world = World(Chain.start(tmp_path / "a", hostile_genesis()))
    start = Action("start", 4, [3, 5, 0], 0, True)
    world.chain.until_beacon()
    result = world.chain.decided_block(*build_block(world, [start]))
    assert result.tx_results[0].code == 0, result.tx_results[0].log
    events = [e.type for _ in range(8) for e in world.chain.decided_block().events]
    assert "inference_expire" in events
    assert world.chain.app.race.keeper.outcomes.items(world.ctx()), "a tally ran"


def test_api_key_refunds_never_overflow_and_never_exceed_the_limit(tmp_path: Path) -> None:
    """C1 (security review): authorize an API key at 2**64 - 1, start a request with it, re-authorize, let it
    expire. Limits above `MAX_SPEND_LIMIT` are refused; at the largest allowed limit the expiry refund neither
    fails nor overflows (on 480aad9 it raised out of end_block and halted every node), and what the key may
    spend never rises above its limit."""
    world = World(Chain.start(tmp_path / "a", hostile_genesis()))
    world.chain.until_beacon()
    too_much = Action("authorize", 3, [MAX_AMOUNT, 0, 0], 0, True)
    assert world.chain.decided_block(*build_block(world, [too_much])).tx_results[0].code == Code.INVALID_MESSAGE
    authorize = Action("authorize", 3, [MAX_SPEND_LIMIT, 0, 0], 0, True)
    start = Action("start", 4, [3, 5, 0], 1, True)
    codes = [r.code for r in world.chain.decided_block(*build_block(world, [authorize, start])).tx_results]
    assert codes == [0, 0]
    assert world.chain.decided_block(*build_block(world, [authorize])).tx_results[0].code == 0
    events = [e for _ in range(4) for e in world.chain.decided_block().events]
    assert "hook_failed" not in {e.type for e in events}
    assert "inference_expire" in {e.type for e in events}
    assert not world.chain.app.inference.keeper.requests.items(world.ctx()), "the request expired and was refunded"
    key = world.chain.app.inference.keeper.api_keys.get(world.ctx(), KEY_ID)
    assert key is not None and (key.spent, key.remaining()) == (0, MAX_SPEND_LIMIT)
