"""Pinned consensus vectors: app hashes after fixed workloads, the tiny Race, and sign bytes.

The JSON files in `tests/vectors/` are known answers. A change that alters any of them changes
consensus bytes: it must update the file in the same commit and say why in the commit message.
Regenerate with `python -m tests.test_vectors --write` (then read the diff).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from racenet.chain.app import App
from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules import (
    auth,
    bank,
    beacon,
    dummy,
    finetune,
    gov,
    inference,
    pool,
    race,
    tokenomics,
    training,
    verification,
)
from racenet.chain.modules.bank import BankGenesis, MsgSend
from racenet.chain.modules.beacon import MsgRegisterKey
from racenet.chain.modules.dummy import MsgClaim, MsgCommit
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
    api_key_id,
    auth_sign_bytes,
    key_request_id,
)
from racenet.chain.modules.inference import Params as InferenceParams
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
from racenet.chain.modules.verification import MsgCheck, MsgReport, MsgReverify
from racenet.chain.scalars import Amount
from racenet.chain.tx import AnyMsg, TxBody, build_tx, decode_envelope, sign_bytes
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, GENESIS_TIME, Chain, app_hashes, balances, key

VECTORS = Path(__file__).parent / "vectors"

MODEL = "SmolLM2-135M-Instruct"
NODES = [key(1), key(2), key(3)]
CONSENSUS = [key(101), key(102), key(103)]
NEWCOMER, NEWCOMER_CONSENSUS = key(4), key(104)
DEV, TA, PROPOSER = key(50), key(51), key(60)
KEY_ID = api_key_id(b"vector api key")
RACE_PARAMS = RaceParams(
    race_blocks=4,
    reveal_blocks=2,
    vote_blocks=2,
    escalation_blocks=1,
    sample_size=4,
    verdict_table=(0, 0, 0, 0, 1),
    validators_per_participant=2,
)


def _addr(k: PrivateKey) -> str:
    return encode_address(k.public_key.address)


def scenario_genesis() -> Genesis:
    """Three Race nodes (two serving the model), a developer, a transfer agent and a proposer."""
    accounts = [*NODES, NEWCOMER, DEV, TA, PROPOSER]
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(c.public_key.raw, 10) for c in CONSENSUS],
        app_state=AppState(
            bank=BankGenesis(balances=balances(accounts)),
            race=RaceGenesis(
                params=RACE_PARAMS,
                nodes=tuple(
                    RaceNode(k.public_key.address, c.public_key.raw, 10) for k, c in zip(NODES, CONSENSUS, strict=True)
                ),
            ),
            inference=InferenceGenesis(
                params=InferenceParams(max_tokens=512, expiry_blocks=5, allow_private_endpoints=True),
                models=(ModelEntry(MODEL, 2),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"http://127.0.0.1:{9000 + i}")
                    for i, k in enumerate(NODES[:2])
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(1_000)),
        ),
    )


class Scenario:
    """Drives the scenario chain block by block and records the app hash after each block."""

    def __init__(self, path: Path) -> None:
        self.chain = Chain.start(path, scenario_genesis())
        self.hashes: list[str] = []

    def block(self, *pairs: tuple[PrivateKey, Msg]) -> list[int]:
        self.chain.sequences = {k.public_key.address: self.sequence(k) for k, _ in pairs}
        result = self.chain.block(*[self.chain.tx(k, m) for k, m in pairs])
        self.hashes.append(result.app_hash.hex())
        return [r.code for r in result.tx_results]

    def sequence(self, k: PrivateKey) -> int:
        """The account's next sequence on chain (a rejected tx does not advance it)."""
        return int(json.loads(self.chain.app.query("auth/account", _addr(k).encode()).value)["sequence"])

    def until(self, phase: Phase, cycle: int) -> None:
        """Empty blocks until the next block is the first of (cycle, phase)."""
        ctx = self.chain.app.read_context()
        target = self.chain.app.race.keeper.schedule(ctx).phase_starts(cycle)[phase]
        while self.chain.app.height < target - 1:
            self.block()

    def start(self, n: int, max_tokens: int = 64) -> MsgStartRequest:
        """A Start for request `n`, signed by the developer's key."""
        request_id = hashlib.sha256(f"vector request {n}".encode()).digest()
        prompt_hash = hashlib.sha256(f"prompt {n}".encode()).digest()
        developer = DEV.public_key.address
        expiry = self.chain.app.height + 20
        auth = RequestAuth(
            chain_id=CHAIN_ID,
            request_id=request_id,
            developer=developer,
            transfer_agent=TA.public_key.address,
            model=MODEL,
            prompt_tokens=17,
            max_tokens=max_tokens,
            max_price_per_token=10**6,
            prompt_hash=prompt_hash,
            expiry_height=expiry,
        )
        return MsgStartRequest(
            request_id=request_id,
            developer=developer,
            model=MODEL,
            prompt_tokens=17,
            max_tokens=max_tokens,
            max_price_per_token=10**6,
            prompt_hash=prompt_hash,
            expiry_height=expiry,
            signer_key=DEV.public_key.raw,
            signature=DEV.sign(auth_sign_bytes(auth)),
            api_key_id=b"",
        )

    def keyed_start(self, n: int, max_tokens: int = 64) -> MsgStartRequest:
        """A Start paid by the API key, sent by its gateway."""
        return MsgStartRequest(
            request_id=b"",
            developer=DEV.public_key.address,
            model=MODEL,
            prompt_tokens=17,
            max_tokens=max_tokens,
            max_price_per_token=0,
            prompt_hash=hashlib.sha256(f"prompt {n}".encode()).digest(),
            expiry_height=0,
            signer_key=b"",
            signature=b"",
            api_key_id=KEY_ID,
        )

    def executor(self, request_id: bytes) -> PrivateKey:
        request = self.chain.app.inference.keeper.requests.get(self.chain.app.read_context(), request_id)
        assert request is not None
        return next(k for k in [*NODES, NEWCOMER] if k.public_key.address == request.executor)

    def challenged(self, node: PrivateKey, cycle: int) -> list[int]:
        return self.chain.app.race.keeper.challenged(self.chain.app.read_context(), cycle, node.public_key.address)

    def assigned(self, node: PrivateKey, cycle: int) -> list[bytes]:
        return self.chain.app.race.keeper.assigned(self.chain.app.read_context(), cycle, node.public_key.address)


def finish(request_id: bytes, tokens: int, fill: bytes) -> MsgFinishRequest:
    """The executor's report: `tokens` completion tokens and a response hash of `fill` bytes."""
    return MsgFinishRequest(request_id=request_id, completion_tokens=tokens, response_hash=fill * 32)


def vote(participant: bytes, accept: bool) -> MsgVote:
    """A cycle-0 check of 4 opened nonces: none or all of them failed."""
    return MsgVote(cycle=0, participant=participant, failed=() if accept else (0, 1, 2, 3))


def race_and_inference_hashes(path: Path) -> list[str]:
    """Every message type and hook: a Race cycle with a newcomer, requests finished, reassigned and expired."""
    s = Scenario(path)
    trees = [
        ProofTree(k.public_key.raw, list(range(100 * i, 100 * i + n)))
        for i, (k, n) in enumerate(zip([*NODES, NEWCOMER], [3, 7, 12, 5], strict=True))
    ]
    codes = s.block(
        (DEV, MsgSend(TA.public_key.address, 5 * 10**9)),
        (NEWCOMER, register_node_msg(NEWCOMER_CONSENSUS, CHAIN_ID, NEWCOMER.public_key.address)),
        (PROPOSER, gov.MsgSubmitProposal("text", "", (), 10**10)),
        (NODES[0], gov.MsgVote(1, gov.VoteOption.YES)),
        (DEV, MsgAuthorizeKey(key_id=KEY_ID, spend_limit=10**9, expiry_height=0, gateways=(TA.public_key.address,))),
        (NODES[2], MsgServeModels((MODEL,), "http://127.0.0.1:9002")),
    )
    assert codes == [0] * 6, codes
    s.chain.until_beacon()
    first, keyed_id = s.start(1), key_request_id(KEY_ID, 0)
    assert s.block((TA, first), (TA, s.keyed_start(2))) == [0, 0]
    assert s.block() == [], "the block that records the requests' beacon round routes them"
    old = s.executor(keyed_id)
    assert s.chain.app.race.keeper.seed(s.chain.app.read_context(), 0), "cycle 0's race is on"
    commits = [(k, MsgCommitProof(0, t.root, t.count)) for k, t in zip([*NODES, NEWCOMER], trees, strict=True)]
    assert s.block(*commits, (s.executor(first.request_id), finish(first.request_id, 40, b"\x01"))) == [0] * 5
    assert s.block((TA, MsgReassignRequest(keyed_id)), (DEV, MsgSend(TA.public_key.address, 10**15))) == [0, 8]
    s.until(Phase.REVEAL, 0)
    finishes = [
        (old, finish(keyed_id, 64, b"\x02")),
        (s.executor(keyed_id), finish(keyed_id, 64, b"\x02")),
    ]
    assert s.block(*finishes) == [0, 11], "the earlier executor may finish; the second Finish finds it closed"
    reveals = [(k, MsgReveal(0, t.open(s.challenged(k, 0)))) for k, t in zip([*NODES, NEWCOMER], trees, strict=True)]
    uncommitted = (DEV, MsgReveal(0, (Leaf(0, 1, ()),)))
    assert s.block(*reveals, uncommitted) == [0, 0, 0, 0, 9]
    s.until(Phase.VOTE, 0)
    s.block()
    participants = [*NODES, NEWCOMER]
    by_address = {k.public_key.address: k for k in participants}
    votes = [
        (by_address[v], vote(p.public_key.address, p is not NODES[1]))
        for p in participants
        for v in s.assigned(p, 0)
        if v in by_address
    ]
    assert s.block(*votes) == [0] * len(votes)
    s.block()
    s.block()
    assert s.block((TA, s.keyed_start(3)), (DEV, MsgRevokeKey(KEY_ID))) == [0, 0]
    for _ in range(6):
        s.block()
    s.chain.app.close()
    return s.hashes


def tiny_race_vector() -> dict[str, Any]:
    """The tiny preset's weights, targets, inputs and distances for a fixed seed and node key."""
    import torch

    from racenet.pow.race import build_race
    from racenet.pow.vectors import input_seed, input_tokens, node_seed, permutation_keys

    torch.set_num_threads(2)
    seed = bytes(range(32))
    pub = PrivateKey(b"\x11" * 32).public_key.raw
    race = build_race("tiny", seed)
    weights = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in race.model.parameters())).hexdigest()
    node = node_seed(pub)
    first = input_seed(seed, node, 0)
    scan = list(range(8192))
    distances = race.node_distances(pub, scan).tolist()
    appropriate = [n for n, d in zip(scan, distances, strict=True) if d < race.threshold]
    fixed = [0, 1, 2, 3, 1000, 2**64 - 1]
    return {
        "preset": "tiny",
        "race_seed": seed.hex(),
        "public_key": pub.hex(),
        "weights_sha256": weights,
        "targets_sha256": hashlib.sha256(race.targets.numpy().tobytes()).hexdigest(),
        "threshold": race.threshold,
        "node_seed": node.hex(),
        "nonce_0_tokens": input_tokens(first, race.preset),
        "nonce_0_permutation_keys_sha256": hashlib.sha256(permutation_keys(first, race.preset).tobytes()).hexdigest(),
        "distances": {str(n): d for n, d in zip(fixed, race.node_distances(pub, fixed).tolist(), strict=True)},
        "appropriate_below_8192": appropriate,
        "appropriate_distances": [distances[n] for n in appropriate],
    }


def one_of_each_message() -> list[Msg]:
    """One message of every type, with fixed field values."""
    h = bytes(range(32))
    return [
        MsgSend(b"\x02" * 20, 7),
        MsgRegisterNode(b"\x04" * 32, b"\x0c" * 64),
        MsgCommitProof(3, h, 9),
        MsgReveal(3, (Leaf(1, 42, (h, h)), Leaf(2, 43, (h,)))),
        MsgVote(cycle=3, participant=b"\x05" * 20, failed=(1, 3)),
        MsgServeModels((MODEL, "other"), "https://node.example.com:9000"),
        MsgAuthorizeKey(key_id=b"\x06" * 32, spend_limit=10**12, expiry_height=500, gateways=(b"\x0b" * 20,)),
        MsgRevokeKey(b"\x06" * 32),
        MsgStartRequest(
            request_id=h,
            developer=b"\x07" * 20,
            model=MODEL,
            prompt_tokens=20,
            max_tokens=100,
            max_price_per_token=10**6,
            prompt_hash=h,
            expiry_height=40,
            signer_key=b"\x09" * 32,
            signature=b"\x0a" * 64,
            api_key_id=b"",
        ),
        MsgReassignRequest(h),
        MsgFinishRequest(request_id=h, completion_tokens=37, response_hash=h),
        MsgCheck(request_id=h, proof=b"\x0d" * 96, passed=False, evidence=(b"\x15" * 32,)),
        MsgReverify(request_id=h, valid=True),
        MsgReport(request_id=h),
        MsgVotePrice(price=2_000),
        MsgRegisterKey(b"\x10" * 48, b"\x11" * 96),
        MsgCommit((h, bytes(32))),
        MsgClaim(request_id=h, salt=h, developer_key=b"\x0e" * 32, developer_signature=b"\x0f" * 64),
        auth.MsgUpdateParams(auth.Params()),
        bank.MsgUpdateParams(bank.Params()),
        beacon.MsgUpdateParams(beacon.Params()),
        dummy.MsgUpdateParams(dummy.Params()),
        inference.MsgUpdateParams(inference.Params()),
        inference.MsgRegisterModel("other", 3),
        race.MsgUpdateParams(race.Params()),
        verification.MsgUpdateParams(verification.Params()),
        gov.MsgUpdateParams(gov.Params()),
        gov.MsgSubmitProposal("title", "summary", (AnyMsg("inference/RegisterModel", b"\x05other\x03"),), 10**10),
        gov.MsgDeposit(1, 10**9),
        gov.MsgVote(1, gov.VoteOption.NO_WITH_VETO),
        gov.MsgTrainingGrant(b"\x12" * 20, 10**9),
        tokenomics.MsgUpdateParams(tokenomics.Params()),
        pool.MsgBuy(usdt=5_000, min_icon=10**9),
        pool.MsgSell(icon=10**9, min_usdt=5_000),
        pool.MsgBridgeDeposit(deposit_id="eth:0x01:0", recipient=b"\x13" * 20, amount=10**6),
        pool.MsgBridgeWithdraw(amount=10**6, destination="0x14"),
        pool.MsgUpdateParams(pool.Params()),
        training.MsgCreateJob(
            architecture="gpt-tiny",
            weights_hash=h,
            dataset_hash=bytes(32),
            dataset_location="debian:bible-kjv",
            inner_lr_ppm=3_000,
            inner_steps=50,
            segment_steps=5,
            outer_lr_ppm=700_000,
            outer_momentum_ppm=900_000,
            rounds=6,
            max_participants=3,
            budget=10**9,
        ),
        training.MsgJoin(1, "10.0.0.1:29500"),
        training.MsgRoundDone(1, 2, h),
        training.MsgCommitSegment(
            job_id=1,
            round=2,
            step=10,
            prev_weights_hash=h,
            weights_hash=bytes(32),
            optimizer_hash=b"\x16" * 32,
            data_indices_hash=b"\x17" * 32,
        ),
        training.MsgPolVerdict(1, 2, b"\x18" * 20, False),
        training.MsgCancelJob(1),
        training.MsgUpdateParams(training.Params()),
        training.MsgCreateGrantJob(
            training.MsgCreateJob(
                architecture="gpt-small",
                weights_hash=h,
                dataset_hash=bytes(32),
                dataset_location="fortunes",
                inner_lr_ppm=3_000,
                inner_steps=50,
                segment_steps=5,
                outer_lr_ppm=700_000,
                outer_momentum_ppm=500_000,
                rounds=2,
                max_participants=2,
                budget=10**6,
            )
        ),
        finetune.MsgCreateJob(b"\x19" * 20, b"", "SmolLM2-135M-Instruct", h, 400, 4, "pw"),
        finetune.MsgCompleteJob(h, b"\x1a" * 32, 1600),
        finetune.MsgCancelJob(h),
    ]


def test_one_of_each_message_covers_every_registered_type(tmp_path: Path) -> None:
    app = App(tmp_path / "app.db")
    assert sorted(m.TYPE for m in one_of_each_message()) == sorted(app.registry)
    app.close()


def sign_bytes_vector() -> dict[str, Any]:
    """For one tx per message type: its type name, the sign bytes and the signed tx bytes."""
    signer = key(1)
    out = {}
    for msg in one_of_each_message():
        raw = build_tx(signer, CHAIN_ID, 7, 1_000, [msg], memo="vector")
        body: TxBody = decode_envelope(raw, {msg.TYPE: type(msg)}, 1 << 20, 1).body
        out[msg.TYPE] = {"sign_bytes": sign_bytes(signer.public_key.raw, body).hex(), "tx": raw.hex()}
    return out


def _hashes(fn: Callable[[Path], list[str]]) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        return fn(Path(d))


VECTOR_FILES: dict[str, Callable[[], Any]] = {
    "app_hash_transfers.json": lambda: {
        "seed": 11,
        "blocks": 40,
        "app_hashes": _hashes(lambda p: app_hashes(p, 11, 40)),
    },
    "app_hash_race_inference.json": lambda: {"app_hashes": _hashes(race_and_inference_hashes)},
    "race_tiny.json": tiny_race_vector,
    "sign_bytes.json": sign_bytes_vector,
}


def _pinned(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.mark.parametrize("name", ["app_hash_transfers.json", "app_hash_race_inference.json", "sign_bytes.json"])
def test_exact_vector(name: str) -> None:
    assert VECTOR_FILES[name]() == _pinned(name)


def test_tiny_race_vector() -> None:
    """Weights, targets and inputs are exact; distances within 1e-5 (fp32 kernels differ across instruction sets)."""
    got, pinned = tiny_race_vector(), _pinned("race_tiny.json")
    inexact = ("distances", "appropriate_distances", "appropriate_below_8192")
    assert {k: v for k, v in got.items() if k not in inexact} == {k: v for k, v in pinned.items() if k not in inexact}
    for nonce, distance in pinned["distances"].items():
        assert got["distances"][nonce] == pytest.approx(distance, abs=1e-5)
    assert got["appropriate_below_8192"] == pinned["appropriate_below_8192"]
    assert got["appropriate_distances"] == pytest.approx(pinned["appropriate_distances"], abs=1e-5)


def test_pinned_appropriate_nonces_are_not_borderline() -> None:
    """No pinned appropriate nonce lies within 1e-4 of the threshold, so float noise cannot flip the vector."""
    pinned = _pinned("race_tiny.json")
    assert all(pinned["threshold"] - d > 1e-4 for d in pinned["appropriate_distances"])


def write() -> None:
    """Recompute every vector file (review the diff: each change is a consensus change)."""
    VECTORS.mkdir(exist_ok=True)
    for name, compute in VECTOR_FILES.items():
        (VECTORS / name).write_text(json.dumps(compute(), indent=1) + "\n")
        print(f"wrote {VECTORS / name}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_vectors --write")
    write()
