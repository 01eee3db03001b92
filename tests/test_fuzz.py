"""Fuzzing every registered message type into CheckTx and FinalizeBlock.

For each message type in `App(...).registry`, hypothesis builds instances from the dataclass's
field types (extreme integers, bytes of telling lengths, unicode strings, tuples, nested
dataclasses), optionally mutates their encoding (a byte flipped, the bytes cut or extended),
and wraps them in transactions signed by funded keys with the right chain id, sequence and
fee, so the ante checks pass and the handlers run; or with exactly one ante fault (wrong chain
id, sequence or signer, a fee below the minimum, an overlong memo); or in a mutated signed
envelope; or as raw garbage. Properties:

1. No exception escapes `check_tx` or `finalize_block`, and no result has code INTERNAL.
2. A transaction rejected by CheckTx leaves the committed state and `check_state` unchanged
   (CheckTx never changes the committed state, even when it accepts).
3. In a block, a transaction rejected by the ante (or not even decodable) changes nothing; one
   that passes the ante but whose message fails changes at most the signer's balance and the
   fee collector's (the fee) and the signer's account (its sequence). States are compared
   against a twin chain with the same history that gets an empty block instead.
4. Every module invariant holds after every block.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import re
import tempfile
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, TypeVar

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from racenet.chain.app import App
from racenet.chain.app_state import AppState
from racenet.chain.codec import MAX_U64, encode
from racenet.chain.errors import ChainError, Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import BlockEnv, Context, Msg
from racenet.chain.modules.auth import Account
from racenet.chain.modules.auth import Params as AuthParams
from racenet.chain.modules.bank import FEE_COLLECTOR, BankGenesis
from racenet.chain.modules.bank import Params as BankParams
from racenet.chain.modules.inference import (
    InferenceGenesis,
    ModelEntry,
    MsgFinishRequest,
    MsgReassignRequest,
    MsgRevokeKey,
    ServerEntry,
)
from racenet.chain.modules.race import Params as RaceParams
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.scalars import Amount
from racenet.chain.store import Branch, KVStore
from racenet.chain.tx import TX_VERSION, AnyMsg, SignedTx, TxBody, build_tx, sign_bytes
from racenet.chain.types import FinalizeBlockResult, TxResult
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, Chain, balances, key

T = TypeVar("T")

CHECK_TX_EXAMPLES = 40
"""Per message type; likewise `BLOCK_EXAMPLES` (each one to three blocks). The file takes about 16 s of CPU."""
BLOCK_EXAMPLES = 20
MIXED_BLOCK_EXAMPLES = 50

ALICE, BOB, CAROL = key(1), key(2), key(3)
SIGNERS = (ALICE, BOB, CAROL)
CONSENSUS = (key(101), key(103), key(102))
"""Consensus keys of ALICE's and CAROL's Race nodes, and a free one BOB may register."""
MODEL = "m"
ENDPOINT = "https://node.example.com:9000"


def _registry() -> dict[str, type[Msg]]:
    """The App's message registry (type name → message dataclass)."""
    app = App(":memory:")
    try:
        return dict(app.registry)
    finally:
        app.close()


REGISTRY = _registry()
TYPES = sorted(REGISTRY)


def genesis() -> Genesis:
    """Funded signers; ALICE is a weighted Race node and serves MODEL.

    Race phases last one block each, so a few blocks reach the commit, reveal and vote windows.
    """
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(CONSENSUS[0].public_key.raw, 10)],
        app_state=AppState(
            bank=BankGenesis(balances=balances(list(SIGNERS))),
            race=RaceGenesis(
                params=RaceParams(race_blocks=4, reveal_blocks=1, vote_blocks=1, escalation_blocks=1),
                nodes=(
                    RaceNode(ALICE.public_key.address, CONSENSUS[0].public_key.raw, 10),
                    RaceNode(CAROL.public_key.address, CONSENSUS[1].public_key.raw),
                ),
            ),
            inference=InferenceGenesis(
                models=(ModelEntry(MODEL, 1),),
                servers=(ServerEntry(ALICE.public_key.address, (MODEL,), ENDPOINT),),
            ),
        ),
    )


# --- values of every field type the codec supports -------------------------------------------

ADDRESSES = (*(k.public_key.address for k in SIGNERS), FEE_COLLECTOR, bytes(20))
PUBKEYS = (*(k.public_key.raw for k in (*SIGNERS, *CONSENSUS)), bytes(32))
STRINGS = (
    "",
    MODEL,
    ENDPOINT,
    "http://127.0.0.1:9000",
    "https://example.org/v1?q#f",
    "tiny",
    "m/with/slash",
    "modèle-é-☃",
)
TOO_BIG = (2**64, 2**64 + 1, 2**80, -1)


def memo(fn: Callable[[Any], T]) -> Callable[[Any], T]:
    """`functools.cache` for a one-argument function of types or values (mypy sees no class as Hashable)."""
    return functools.cache(fn)


def _weighted(common: list[st.SearchStrategy[Any]], rare: st.SearchStrategy[Any], odds: int) -> st.SearchStrategy[Any]:
    """`rare` drawn once in `odds * len(common) + 1` draws (`st.one_of` would merge repeated branches)."""
    choices = [*(common * odds), rare]
    return st.sampled_from(range(len(choices))).flatmap(choices.__getitem__)


INTS: st.SearchStrategy[int] = _weighted(
    [
        st.integers(0, 3),
        st.sampled_from((0, 1, 2, 2**32, 2**63, 2**64 - 1)),
        st.integers(0, MAX_U64),
    ],
    st.sampled_from(TOO_BIG),  # the encoder must refuse these
    odds=5,
)
BYTES: st.SearchStrategy[bytes] = st.one_of(
    st.sampled_from(ADDRESSES + PUBKEYS),
    *(st.binary(min_size=n, max_size=n) for n in (0, 20, 32, 64)),
    st.binary(max_size=80),
)
TEXT: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(STRINGS),
    st.text(max_size=40),
    st.text(st.characters(min_codepoint=0x80, codec="utf-8"), max_size=10),
)


def _amounts() -> st.SearchStrategy[int]:
    """Integers for `Amount` fields: an Amount when in range, else a plain int the encoder refuses."""
    return INTS.map(lambda n: Amount(n) if 0 <= n <= MAX_U64 else n)


@memo
def values(tp: Any) -> st.SearchStrategy[Any]:
    """Random values of a field type; TypeError for a type the fuzzer does not know (add it here)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        return st.lists(values(typing.get_args(tp)[0]), max_size=3).map(tuple)
    if origin in (UnionType, typing.Union):
        return st.one_of(*(values(arg) for arg in typing.get_args(tp)))
    if tp is NoneType:
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is Amount:
        return _amounts()
    if tp is int:
        return INTS
    if tp is bytes:
        return BYTES
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return st.one_of(st.sampled_from(list(tp)), TEXT)
    if tp is str:
        return TEXT
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return instances(tp)
    raise TypeError(f"no fuzz strategy for field type {tp!r}")


@memo
def init_fields(cls: Any) -> dict[str, Any]:
    """A dataclass's constructor fields and their resolved types, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


@memo
def instances(cls: Any) -> st.SearchStrategy[Any]:
    """Random instances of a dataclass, every field drawn from its declared type."""
    return st.builds(cls, **{name: values(hint) for name, hint in init_fields(cls).items()})


def out_of_range(value: Any) -> bool:
    """Whether a value holds, anywhere inside, an integer outside [0, 2**64)."""
    if isinstance(value, bool | Enum):
        return False
    if isinstance(value, int):
        return not 0 <= value <= MAX_U64
    if isinstance(value, tuple):
        return any(out_of_range(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(out_of_range(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


def encoded(msg: Any) -> bytes:
    """The message's canonical bytes; one the encoder (rightly) refuses is skipped.

    It must refuse every integer outside u64; a string that is not valid Unicode (a lone
    surrogate) cannot be UTF-8 either.
    """
    if out_of_range(msg):
        with pytest.raises(ValueError):
            encode(msg)
        reject()
    try:
        return encode(msg)
    except UnicodeEncodeError:
        reject()


# --- well-formed seeds ------------------------------------------------------------------------

SEED_TRIES = 20_000
SEED_PATIENCE = 2_000
SEEDS_PER_TYPE = 12
SHAPES: dict[Any, tuple[Any, ...]] = {
    bool: (False, True),
    int: (0, 1, 3),
    Amount: (Amount(0), Amount(1), Amount(3)),
    bytes: (b"", ALICE.public_key.address, BOB.public_key.address, CONSENSUS[2].public_key.raw, bytes(64)),
    str: ("", MODEL, ENDPOINT),
}
"""Plausible values of each scalar type: the genesis' keys and names, and the sizes validators ask for."""


def pick(tp: Any, rng: random.Random) -> Any:
    """A random value of a field type built from `SHAPES` (tuples of 0 to 2 items)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        return tuple(pick(typing.get_args(tp)[0], rng) for _ in range(rng.choice((0, 1, 1, 2))))
    if origin in (UnionType, typing.Union):
        return pick(rng.choice(typing.get_args(tp)), rng)
    if tp is NoneType:
        return None
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return rng.choice(list(tp))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp(**{name: pick(hint, rng) for name, hint in init_fields(tp).items()})
    return rng.choice(SHAPES[tp])


def is_well_formed(msg: Msg) -> bool:
    """Whether a message passes its stateless checks (any exception but ChainError propagates)."""
    try:
        msg.validate()
    except ChainError:
        return False
    return True


@functools.cache
def well_formed(type_name: str) -> tuple[Msg, ...]:
    """Up to `SEEDS_PER_TYPE` distinct instances that pass `validate`, found by a seeded random search.

    The search gives up after `SEED_TRIES` draws, or `SEED_PATIENCE` draws without a new one.
    """
    cls, rng = REGISTRY[type_name], random.Random(type_name)
    found: dict[bytes, Msg] = {}
    last_new = 0
    for i in range(SEED_TRIES):
        if len(found) == SEEDS_PER_TYPE or i - last_new > SEED_PATIENCE:
            break
        msg = pick(cls, rng)
        if is_well_formed(msg) and encode(msg) not in found:
            found[encode(msg)] = msg
            last_new = i
    return tuple(found.values())


@memo
def tweaked(seed: Any) -> st.SearchStrategy[Any]:
    """A seed as is, or with one field replaced by a random value of its type."""
    hints = init_fields(type(seed))
    names = list(hints)
    replaced = st.sampled_from(names).flatmap(
        lambda n: values(hints[n]).map(lambda v: dataclasses.replace(seed, **{n: v}))
    )
    return st.one_of(st.just(seed), replaced)


@functools.cache
def messages(type_name: str) -> st.SearchStrategy[Any]:
    """Instances of a message type: mostly well-formed seeds (maybe with one field changed), else random."""
    seeds, random_ones = well_formed(type_name), instances(REGISTRY[type_name])
    if not seeds:
        return random_ones
    return _weighted([st.sampled_from(seeds).flatmap(tweaked)], random_ones, odds=2)


# --- fuzzed transactions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """A corruption of some bytes: one byte xored, the bytes cut short, or bytes appended."""

    kind: str
    position: int
    data: bytes

    def apply(self, raw: bytes) -> bytes:
        """The corrupted bytes (a cut or flip of empty bytes appends instead)."""
        if self.kind == "append" or not raw:
            return raw + self.data
        i = self.position % len(raw)
        if self.kind == "cut":
            return raw[:i]
        return raw[:i] + bytes([raw[i] ^ self.data[0]]) + raw[i + 1 :]


MUTATIONS: st.SearchStrategy[Mutation] = st.one_of(
    st.builds(Mutation, st.just("flip"), st.integers(0, 10**4), st.integers(1, 255).map(lambda b: bytes([b]))),
    st.builds(Mutation, st.just("cut"), st.integers(0, 10**4), st.just(b"\x00")),
    st.builds(Mutation, st.just("append"), st.just(0), st.binary(min_size=1, max_size=8)),
)


@dataclass(frozen=True)
class Payload:
    """One message on the wire: a registered message instance (maybe with mutated bytes) or raw bytes."""

    type: str
    msg: Any
    mutation: Mutation | None

    def wire(self) -> AnyMsg:
        """The message as carried in a transaction body."""
        value = self.msg if isinstance(self.msg, bytes) else encoded(self.msg)
        return AnyMsg(self.type, self.mutation.apply(value) if self.mutation else value)


class Fault(StrEnum):
    """The one ante check a transaction is built to fail (NONE: every ante check passes)."""

    NONE = "none"
    CHAIN_ID = "chain id"
    SEQUENCE = "sequence"
    SIGNATURE = "signature"
    FEE = "fee"
    MEMO = "memo"


@dataclass(frozen=True)
class TxSpec:
    """A transaction to build against the current state: signer, messages, fault, envelope corruption."""

    signer: int
    payloads: tuple[Payload, ...]
    fault: Fault
    memo: str
    shift: int
    low_fee: int
    envelope: Mutation | None

    @property
    def address(self) -> bytes:
        """The signer's account address."""
        return SIGNERS[self.signer].public_key.address

    @property
    def passes_ante(self) -> bool:
        """Whether the transaction is meant to pass every ante check (so its messages run)."""
        known = all(p.type in REGISTRY for p in self.payloads)
        return known and self.fault is Fault.NONE and self.envelope is None

    def fee(self) -> int:
        """The fee it offers: enough for its messages' work, or below the minimum for a FEE fault."""
        if self.fault is Fault.FEE:
            return self.low_fee
        work = sum(REGISTRY[p.type].WORK for p in self.payloads if p.type in REGISTRY)
        return FEE + BankParams().fee_per_work * work

    def build(self, sequence: int) -> bytes:
        """The signed (and maybe corrupted) bytes, given the signer's next sequence."""
        f = self.fault
        body = TxBody(
            chain_id=CHAIN_ID + "-other" if f is Fault.CHAIN_ID else CHAIN_ID,
            sequence=(sequence + self.shift) % 2**64 if f is Fault.SEQUENCE else sequence,
            fee=self.fee(),
            memo="x" * (AuthParams().max_memo_bytes + 1) if f is Fault.MEMO else self.memo,
            msgs=tuple(p.wire() for p in self.payloads),
        )
        signer = SIGNERS[self.signer]
        forger = SIGNERS[(self.signer + 1) % len(SIGNERS)] if f is Fault.SIGNATURE else signer
        raw = sign(signer, body, forger)
        return self.envelope.apply(raw) if self.envelope else raw


Fuzzed = TxSpec | bytes
"""A transaction to fuzz with: a spec built against the state, or raw garbage bytes."""


def sign(key: PrivateKey, body: TxBody, signing_key: PrivateKey | None = None) -> bytes:
    """`build_tx`'s envelope for any body (the signature by `signing_key`, by default the key itself)."""
    pub = key.public_key.raw
    return encode(SignedTx(TX_VERSION, body, pub, (signing_key or key).sign(sign_bytes(pub, body))))


@functools.cache
def payloads(type_name: str) -> st.SearchStrategy[Payload]:
    """Messages of one registered type, mostly well encoded, sometimes with corrupted bytes."""
    mutation = _weighted([st.none()], MUTATIONS, odds=4)
    return st.builds(Payload, st.just(type_name), messages(type_name), mutation)


ANY_PAYLOAD = st.sampled_from(TYPES).flatmap(payloads)
UNKNOWN_PAYLOAD = st.builds(
    Payload, st.text(max_size=20).filter(lambda t: t not in REGISTRY), st.binary(max_size=40), st.none()
)


@functools.cache
def tx_specs(first: st.SearchStrategy[Payload]) -> st.SearchStrategy[TxSpec]:
    """Transactions whose first message is drawn from `first`, maybe followed by one of any type."""
    more = st.lists(_weighted([ANY_PAYLOAD], UNKNOWN_PAYLOAD, odds=5), max_size=1)
    return st.builds(
        TxSpec,
        signer=st.integers(0, len(SIGNERS) - 1),
        payloads=st.tuples(first, more).map(lambda p: (p[0], *p[1])),
        fault=_weighted([st.just(Fault.NONE)], st.sampled_from(list(Fault)), odds=4),
        memo=st.text(max_size=16),
        shift=st.one_of(st.integers(1, 3), st.just(MAX_U64)),
        low_fee=st.integers(0, BankParams().min_fee - 1),
        envelope=_weighted([st.none()], MUTATIONS, odds=5),
    )


@functools.cache
def fuzzed(type_name: str) -> st.SearchStrategy[Fuzzed]:
    """Transactions led by a message of `type_name`, plus some raw garbage."""
    garbage = st.one_of(st.binary(max_size=300), tx_specs(UNKNOWN_PAYLOAD))
    return _weighted([tx_specs(payloads(type_name))], garbage, odds=6)


# --- chains and state --------------------------------------------------------------------------


def start(path: Path) -> Chain:
    """A fresh chain from `genesis()` after its first (empty) block."""
    chain = Chain.start(path, genesis())
    chain.decided_block()
    return chain


def sequence_in(app: App, store: KVStore) -> Callable[[bytes], int]:
    """The next sequence of an account as `store` sees it."""
    ctx = Context(store=store, block=BlockEnv(CHAIN_ID, app.height, 0))
    return lambda address: int(app.auth.keeper.account(ctx, address).sequence)


def fee_keys(app: App, signer: bytes) -> set[bytes]:
    """The store keys a fee payment may write: the signer's and the collector's balances, the signer's account.

    Found by writing them through the keepers in a throwaway branch, not by building key bytes.
    """
    probe = Branch(app.store)
    ctx = Context(store=probe, block=BlockEnv(CHAIN_ID, app.height, 0))
    app.bank.keeper.balances.set(ctx, signer, 1)
    app.bank.keeper.balances.set(ctx, FEE_COLLECTOR, 1)
    app.auth.keeper.accounts.set(ctx, signer, Account(b"", 0))
    return set(probe.changes)


def changed_keys(a: Chain, b: Chain) -> set[bytes]:
    """The committed keys whose values differ between two chains."""
    sa, sb = dict(a.state()), dict(b.state())
    return {k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k)}


def charged(a: Chain, b: Chain, signer: bytes, fee: int) -> bool:
    """Whether `a` is `b` after `signer` paid exactly `fee` to the collector and advanced its sequence."""
    ra, rb = a.app.read_context(), b.app.read_context()
    bank, auth = a.app.bank.keeper, a.app.auth.keeper
    return (
        bank.balance(ra, signer) + fee == bank.balance(rb, signer)
        and bank.balance(ra, FEE_COLLECTOR) == bank.balance(rb, FEE_COLLECTOR) + fee
        and auth.account(ra, signer).sequence == auth.account(rb, signer).sequence + 1
    )


KNOWN_FINDINGS: dict[str, re.Pattern[str]] = {}
"""Open bugs (each also kept as an xfail test) by the message of the exception behind their INTERNAL result.

Empty while no finding is open. Finding 1, fixed, would have read
`{FINDING_1: re.compile(r"(hash|public key) key must be 32 bytes, got \\d+")}`.
"""


class Unexpected(logging.Handler):
    """Collects, while `active`, the exceptions the App logs when a handler raises something unexpected."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.active = False
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's exception."""
        if self.active and record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


UNEXPECTED = Unexpected()
logging.getLogger("racenet.chain.app").addHandler(UNEXPECTED)


def known_finding(error: BaseException) -> str | None:
    """The known finding an unexpected exception is an instance of, if any."""
    text = str(error)
    return next((name for name, pattern in KNOWN_FINDINGS.items() if pattern.fullmatch(text)), None)


@contextmanager
def no_internal_errors() -> Iterator[None]:
    """Fail on any exception a handler raised (code INTERNAL) unless it is a known finding."""
    UNEXPECTED.errors.clear()
    UNEXPECTED.active = True
    try:
        yield
    finally:
        UNEXPECTED.active = False
    for error in UNEXPECTED.errors:
        assert known_finding(error), f"INTERNAL error: {type(error).__name__}: {error}"
    UNEXPECTED.errors.clear()


def assert_not_internal(results: tuple[TxResult, ...]) -> None:
    """A result has code INTERNAL only for an exception the App logged (checked by `no_internal_errors`)."""
    internal = sum(r.code == Code.INTERNAL for r in results)
    assert internal <= len(UNEXPECTED.errors), "an INTERNAL result without a logged exception"


SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


@contextmanager
def workdir() -> Iterator[Path]:
    """A temporary directory for one example's chains, in memory where there is a tmpfs (commits fsync)."""
    with tempfile.TemporaryDirectory(prefix="racenet-fuzz-", dir=SCRATCH) as d:
        yield Path(d)


# --- CheckTx -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mempool(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """One chain whose check_state accumulates every transaction CheckTx admits."""
    return start(tmp_path_factory.mktemp("mempool"))


def check_one(chain: Chain, spec: Fuzzed) -> TxResult:
    """Run one fuzzed transaction through CheckTx and assert properties 1 and 2."""
    app = chain.app
    before, pending = chain.state(), dict(app.check_state.changes)
    raw = spec if isinstance(spec, bytes) else spec.build(sequence_in(app, app.check_state)(spec.address))
    result = app.check_tx(raw)
    assert_not_internal((result,))
    assert chain.state() == before, "CheckTx changed committed state"
    if isinstance(spec, bytes) or not spec.passes_ante:
        assert result.code != 0, "a transaction built to fail the ante was admitted"
    if result.code != 0:
        assert app.check_state.changes == pending, "a rejected transaction changed check_state"
    app.check_invariants()
    return result


@pytest.mark.parametrize("type_name", TYPES)
@settings(max_examples=CHECK_TX_EXAMPLES, deadline=None)
@given(data=st.data())
def test_check_tx_every_message_type(mempool: Chain, type_name: str, data: st.DataObject) -> None:
    """CheckTx on fuzzed transactions led by `type_name`: never raises, never INTERNAL, a rejection changes nothing."""
    spec = data.draw(fuzzed(type_name))
    with no_internal_errors():
        check_one(mempool, spec)


# --- FinalizeBlock -----------------------------------------------------------------------------


def build_block(chain: Chain, specs: list[Fuzzed]) -> list[bytes]:
    """Build a block's transactions in order, each good one taking its signer's next sequence."""
    next_sequence = sequence_in(chain.app, chain.app.read_context().store)
    offsets: dict[bytes, int] = {}
    raws = []
    for spec in specs:
        if isinstance(spec, bytes):
            raws.append(spec)
            continue
        offset = offsets.get(spec.address, 0)
        raws.append(spec.build(next_sequence(spec.address) + offset))
        if spec.passes_ante:
            offsets[spec.address] = offset + 1
    return raws


def replay(path: Path, history: list[list[bytes]]) -> Chain:
    """A fresh chain that has run exactly the blocks of `history`."""
    chain = start(path)
    for txs in history:
        chain.decided_block(*txs)
    return chain


def assert_block(chain: Chain, twin: Chain, specs: list[Fuzzed], result: FinalizeBlockResult) -> None:
    """Properties 1 and 3 for one block, against `twin` (same history, empty block instead)."""
    assert_not_internal(result.tx_results)
    good = [s for s in specs if isinstance(s, TxSpec) and s.passes_ante]
    for spec, r in zip(specs, result.tx_results, strict=True):
        if spec not in good:
            assert r.code != 0, f"a transaction built to fail the ante was accepted: {spec!r}"
    if any(r.code == 0 for r in result.tx_results):
        return  # an accepted message may write anything its handler writes (single-tx blocks isolate the rest)
    changed = changed_keys(chain, twin)
    allowed = set().union(*(fee_keys(chain.app, s.address) for s in good))
    assert changed <= allowed, f"a rejected transaction wrote {sorted(changed - allowed)!r}"
    if not good:
        assert result.app_hash == twin.app.app_hash, "a block of ante-rejected transactions changed the app hash"
    if len(good) == 1 and len(specs) == 1 and changed:
        assert charged(chain, twin, good[0].address, good[0].fee()), "a failed message changed more than its fee"


def run_blocks(blocks: list[list[Fuzzed]]) -> None:
    """Feed the blocks to a chain, each compared with a twin of the same history that gets an empty block.

    The twin goes on to the next block while the two app hashes agree (same history of changes);
    otherwise a fresh twin replays the chain's blocks.
    """
    with workdir() as tmp, no_internal_errors():
        chain, twin = start(tmp / "chain"), start(tmp / "twin0")
        history: list[list[bytes]] = []
        for i, specs in enumerate(blocks):
            if twin.app.app_hash != chain.app.app_hash:
                twin.app.close()
                twin = replay(tmp / f"twin{i}", history)
            raws = build_block(chain, specs)
            result = chain.decided_block(*raws)
            chain.app.check_invariants()
            twin.decided_block()
            assert_block(chain, twin, specs, result)
            history.append(raws)
        chain.app.close()
        twin.app.close()


@functools.cache
def blocks_of(txs: st.SearchStrategy[Fuzzed]) -> st.SearchStrategy[list[list[Fuzzed]]]:
    """One to three blocks, mostly of a single transaction (so each diff isolates one transaction)."""
    block = st.one_of(st.lists(txs, min_size=1, max_size=1), st.lists(txs, min_size=1, max_size=3))
    return st.lists(block, min_size=1, max_size=3)


@pytest.mark.parametrize("type_name", TYPES)
@settings(max_examples=BLOCK_EXAMPLES, deadline=None)
@given(data=st.data())
def test_finalize_block_every_message_type(type_name: str, data: st.DataObject) -> None:
    """FinalizeBlock on fuzzed transactions led by `type_name`: properties 1, 3 and 4."""
    run_blocks(data.draw(blocks_of(fuzzed(type_name))))


@settings(max_examples=MIXED_BLOCK_EXAMPLES, deadline=None)
@given(blocks=blocks_of(st.sampled_from(TYPES).flatmap(fuzzed)))
def test_finalize_block_mixed_message_types(blocks: list[list[Fuzzed]]) -> None:
    """Blocks mixing fuzzed transactions of every type and garbage: properties 1, 3 and 4."""
    run_blocks(blocks)


# --- the fuzzer itself -------------------------------------------------------------------------


def test_every_registered_message_type_is_fuzzed() -> None:
    """The fuzzed types are exactly the App's registry, and each type's fields have a strategy."""
    assert sorted(_registry()) == TYPES
    for name in TYPES:
        assert dataclasses.is_dataclass(REGISTRY[name])
        instances(REGISTRY[name])


@settings(max_examples=20, deadline=None)
@given(msg=st.sampled_from(TYPES).flatmap(lambda t: instances(REGISTRY[t])))
def test_envelope_matches_build_tx(msg: Msg) -> None:
    """The fuzzer's envelope builder gives exactly `build_tx`'s bytes for any encodable message."""
    body = TxBody(CHAIN_ID, 7, FEE, "", (AnyMsg(msg.TYPE, encoded(msg)),))
    assert sign(ALICE, body) == build_tx(ALICE, CHAIN_ID, 7, FEE, [msg])


def _int_fields() -> list[tuple[str, str]]:
    """Every (message type, field) whose declared type is an integer."""
    out: list[tuple[str, str]] = []
    for name in TYPES:
        out += [(name, field) for field, hint in init_fields(REGISTRY[name]).items() if hint in (int, Amount)]
    return out


@pytest.mark.parametrize(("type_name", "field"), _int_fields())
@settings(max_examples=5, deadline=None)
@given(data=st.data(), n=st.sampled_from(TOO_BIG))
def test_encoder_refuses_integers_outside_u64(type_name: str, field: str, data: st.DataObject, n: int) -> None:
    """A message whose integer field is outside [0, 2**64) does not encode."""
    msg = dataclasses.replace(data.draw(instances(REGISTRY[type_name])), **{field: n})
    with pytest.raises(ValueError):
        encode(msg)


# --- findings, kept as regression examples ------------------------------------------------------

FINDING_1 = (
    "finding 1 (fixed while this fuzzer was written): inference/Reassign and inference/Finish did not validate "
    "that request_id is 32 bytes, nor inference/RevokeKey its key, so the keeper's fixed-size store key raised "
    "ValueError ('hash key must be 32 bytes, got 20') and the transaction failed with code INTERNAL"
)
FINDING_1_EXAMPLES: dict[str, Callable[[], Msg]] = {
    "inference/Reassign": lambda: MsgReassignRequest(request_id=bytes(20)),
    "inference/Finish": lambda: MsgFinishRequest(request_id=bytes(20), completion_tokens=1, response_hash=bytes(32)),
    "inference/RevokeKey": lambda: MsgRevokeKey(key_id=bytes(20)),
}
"""Finding 1's failing examples, built when the test runs (so a renamed field fails only this test)."""


@pytest.mark.parametrize("type_name", sorted(FINDING_1_EXAMPLES))
def test_finding_1_short_ids_are_invalid_not_internal(tmp_path: Path, type_name: str) -> None:
    """Finding 1: a 20-byte request id or API key id is an invalid message, not an INTERNAL error."""
    chain = start(tmp_path)
    raw = build_tx(ALICE, CHAIN_ID, 0, FEE, [FINDING_1_EXAMPLES[type_name]()])
    assert chain.app.check_tx(raw).code == Code.INVALID_MESSAGE
    assert chain.decided_block(raw).tx_results[0].code == Code.INVALID_MESSAGE


def _bytes_fields() -> list[tuple[str, str]]:
    """Every (message type, field) whose declared type is bytes."""
    out: list[tuple[str, str]] = []
    for name in TYPES:
        out += [(name, field) for field, hint in init_fields(REGISTRY[name]).items() if hint is bytes]
    return out


@pytest.mark.parametrize(("type_name", "field"), _bytes_fields())
@settings(max_examples=4, deadline=None)
@given(data=st.data(), size=st.sampled_from((0, 1, 19, 21, 31, 33, 63, 65)))
def test_wrong_sized_bytes_never_internal(
    mempool: Chain, type_name: str, field: str, data: st.DataObject, size: int
) -> None:
    """Finding 1 generalised: no bytes field of any message, at an odd size, makes a handler raise."""
    msg = dataclasses.replace(data.draw(messages(type_name)), **{field: bytes(size)})
    spec = TxSpec(0, (Payload(type_name, msg, None),), Fault.NONE, "", 1, 0, None)
    with no_internal_errors():
        check_one(mempool, spec)
