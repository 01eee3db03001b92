"""Every message type and every hook against extreme integers and random fields.

Hypothesis writes blocks of messages from every kind of sender (registered nodes, a developer, a
transfer agent, the validators authority, an API key) whose integers are 0, 1, 2**64 - 1, 2**64 or
random, and whose other fields are either plausible (the right executor, a real proof, an open
request) or random. The chain runs them as decided blocks (as a Byzantine proposer could force)
through whole Race cycles and request expiries. After every block: no exception left the App,
every rejection has a clear code (never `internal`), every module invariant holds, validator power
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
from racenet.chain.modules.bank import BankGenesis, MsgSend
from racenet.chain.modules.inference import (
    InferenceGenesis,
    ModelEntry,
    MsgAuthorizeKey,
    MsgFinishRequest,
    MsgReassignRequest,
    MsgRevokeKey,
    MsgServeModels,
    MsgStartRequest,
    RequestAuth,
    ServerEntry,
    auth_sign_bytes,
    choose_executor,
)
from racenet.chain.modules.inference import Params as InferenceParams
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
)
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.validators import MAX_TOTAL_POWER, MsgSetPower, ValidatorsGenesis
from racenet.chain.scalars import MAX_AMOUNT, Amount
from racenet.chain.tx import TX_VERSION, AnyMsg, SignedTx, TxBody, sign_bytes
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, Chain, balances, key

MODEL = "m"
NODES = [key(1), key(2), key(3)]
CONSENSUS = [key(101), key(102), key(103)]
DEV, TA, AUTHORITY, SESSION = key(50), key(51), key(60), key(52)
SIGNERS = [*NODES, DEV, TA, AUTHORITY, SESSION]
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
            bank=BankGenesis(balances=balances([*NODES, DEV, TA, AUTHORITY], 10**15)),
            validators=ValidatorsGenesis(authority=AUTHORITY.public_key.address),
            race=RaceGenesis(
                params=RaceParams(race_blocks=1, commit_blocks=1, reveal_blocks=2, vote_blocks=1, sample_size=2),
                nodes=tuple(
                    RaceNode(k.public_key.address, c.public_key.raw, 10) for k, c in zip(NODES, CONSENSUS, strict=True)
                ),
            ),
            inference=InferenceGenesis(
                params=InferenceParams(unit_price=Amount(1), max_tokens=MAX_AMOUNT, expiry_blocks=4),
                models=(ModelEntry(MODEL, 1),),
                servers=tuple(ServerEntry(k.public_key.address, (MODEL,), "http://127.0.0.1:9") for k in NODES),
            ),
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
        ["send", "set_power", "register", "race", "race", "serve", "authorize", "revoke", "start", "reassign", "finish"]
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
        if a.kind == "set_power":
            signer = AUTHORITY if a.flag else signer
            return signer, MsgSetPower(CONSENSUS[a.pick % 3].public_key.raw if a.flag else bytes(32), n0)
        if a.kind == "register":
            consensus = CONSENSUS[a.pick % 3].public_key.raw if a.flag else hashlib.sha256(bytes([a.pick])).digest()
            return signer, MsgRegisterNode(consensus)
        if a.kind == "race":
            return self.race_step(a)
        if a.kind == "serve":
            return signer, MsgServeModels((MODEL,) if a.flag else ("x" * (1 + a.pick),), "http://127.0.0.1:9")
        if a.kind == "authorize":
            return DEV if a.flag else signer, MsgAuthorizeKey(SESSION.public_key.raw if a.flag else bytes(32), n0)
        if a.kind == "revoke":
            return DEV if a.flag else signer, MsgRevokeKey(SESSION.public_key.raw)
        if a.kind == "start":
            return TA if a.flag else signer, self.start(a)
        return self.request_step(a)

    def race_step(self, a: Action) -> tuple[PrivateKey, Msg]:
        """What the phase asks of a node (commit, reveal or vote), with its counts taken from the action."""
        n0, n1, n2 = a.numbers
        node = NODES[a.signer % 3] if a.flag else SIGNERS[a.signer]
        address, race = node.public_key.address, self.chain.app.race.keeper
        phase, cycle = self.phase(), self.cycle() if a.flag else n2
        if phase == Phase.REVEAL:
            tree = self.trees.get(address)
            if a.flag and tree is not None:
                return node, MsgReveal(cycle, tree.open(race.challenged(self.ctx(), cycle, address)))
            return node, MsgReveal(cycle, (Leaf(n0, n1, (bytes(32),) * (a.pick % 3)),))
        if phase == Phase.VOTE:
            participant = NODES[a.pick % 3].public_key.address
            assigned = race.assigned(self.ctx(), cycle, participant)
            voter = next((k for k in NODES if k.public_key.address in assigned), node) if a.flag else node
            vote = MsgVote(cycle=cycle, participant=participant, accept=a.pick % 2 == 0, checked=n0, mismatches=n1)
            return voter, vote
        if a.flag and a.pick % 2:
            tree = ProofTree(node.public_key.raw, list(range(1 + n1 % 5)))
            self.trees[address] = tree
            return node, MsgCommitProof(cycle, tree.root, tree.count)
        return node, MsgCommitProof(cycle, hashlib.sha256(b"root").digest(), n1)

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
        """A Start signed by the developer or its API key, routed by the rule (or not, if the flag is off)."""
        n0, n1, n2 = a.numbers
        self.made += 1
        request_id = hashlib.sha256(self.made.to_bytes(8, "big")).digest()
        self.requests.append(request_id)
        payer = SESSION if a.pick % 2 else DEV
        cycle = self.cycle() if a.flag else n2
        auth = RequestAuth(
            chain_id=CHAIN_ID,
            request_id=request_id,
            developer=DEV.public_key.address,
            model=MODEL,
            max_tokens=n1,
            prompt_hash=bytes(32),
        )
        seed = self.chain.app.race.keeper.seed(self.ctx(), cycle)
        candidates = self.chain.app.inference.keeper.candidates(self.ctx(), MODEL)
        chosen = choose_executor(seed, request_id, 0, candidates) if seed else None
        executor = chosen if a.flag and chosen is not None else NODES[0].public_key.address
        return MsgStartRequest(
            request_id=request_id,
            developer=DEV.public_key.address,
            model=MODEL,
            prompt_tokens=n0,
            max_tokens=n1,
            prompt_hash=bytes(32),
            cycle=cycle,
            executor=executor,
            auth_key=payer.public_key.raw,
            auth_signature=payer.sign(auth_sign_bytes(auth)),
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
            check_block(world, twin, build_block(world, block))
    finally:
        world.chain.app.close()
        twin.app.close()


def test_the_race_and_expiry_hooks_run_in_these_blocks(tmp_path: Path) -> None:
    """The schedule above does reach every hook: seeds, a tally and an expiry within a few blocks."""
    world = World(Chain.start(tmp_path / "a", hostile_genesis()))
    start = Action("start", 4, [3, 5, 0], 0, True)
    world.chain.block()
    result = world.chain.decided_block(*build_block(world, [start]))
    assert result.tx_results[0].code == 0, result.tx_results[0].log
    events = [e.type for _ in range(4) for e in world.chain.decided_block().events]
    assert "inference_expire" in events
    assert world.chain.app.race.keeper.outcomes.items(world.ctx()), "a tally ran"


def test_a_refund_that_overflows_fails_alone_and_the_chain_goes_on(tmp_path: Path) -> None:
    """C1: re-authorizing an API key at 2**64 - 1 makes the expiry refund overflow. That one expiry fails with
    an event and changes nothing; the block, the other hooks and the invariants are unaffected."""
    world = World(Chain.start(tmp_path / "a", hostile_genesis()))
    world.chain.block()
    authorize = Action("authorize", 3, [MAX_AMOUNT, 0, 0], 0, True)
    start = Action("start", 4, [3, 5, 0], 1, True)
    codes = [r.code for r in world.chain.decided_block(*build_block(world, [authorize, start])).tx_results]
    assert codes == [0, 0]
    assert world.chain.decided_block(*build_block(world, [authorize])).tx_results[0].code == 0
    failures: set[str] = set()
    for _ in range(3):
        failures |= {dict(e.attributes)["item"] for e in world.chain.decided_block().events if e.type == "hook_failed"}
    assert any(item.startswith("expiry of request") for item in failures)
    assert world.chain.app.inference.keeper.requests.items(world.ctx()), "the request is still open, escrow intact"
