"""What the explorer shows, read from the chain through a `ChainClient` (CometBFT RPC and ABCI queries).

Every call has the client's timeout; a failed one raises `ClientError`, which a page renders as an error box.
The chain keeps no history of Race weights, so `WeightHistory` remembers each node's weight per tallied cycle
as this node's explorer sees them (every page view and live poll samples the current tally).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from racenet.chain.codec import DecodeError, decode
from racenet.chain.jsonform import to_json
from racenet.chain.module import Msg
from racenet.chain.modules import race
from racenet.chain.modules.auth.module import AuthModule
from racenet.chain.modules.bank.module import BankModule
from racenet.chain.modules.beacon import BEACON_TX_PREFIX
from racenet.chain.modules.beacon.module import BeaconModule
from racenet.chain.modules.dummy.module import DummyModule
from racenet.chain.modules.finetune.module import FinetuneModule
from racenet.chain.modules.gov.module import GovModule
from racenet.chain.modules.inference import MsgStartRequest
from racenet.chain.modules.inference.module import InferenceModule
from racenet.chain.modules.pool.module import PoolModule
from racenet.chain.modules.pricing.module import PricingModule
from racenet.chain.modules.race.module import RaceModule
from racenet.chain.modules.tokenomics.module import TokenomicsModule
from racenet.chain.modules.training.module import TrainingModule
from racenet.chain.modules.validators.module import ValidatorsModule
from racenet.chain.modules.verification.module import VerificationModule
from racenet.chain.tx import SignedTx, tx_hash
from racenet.crypto.address import address_from_pubkey, encode_address
from racenet.node.client import ChainClient, ClientError
from racenet.node.trainer import Progress, read_progress

MODULES = (
    AuthModule,
    BankModule,
    ValidatorsModule,
    RaceModule,
    BeaconModule,
    InferenceModule,
    PricingModule,
    VerificationModule,
    DummyModule,
    TokenomicsModule,
    PoolModule,
    GovModule,
    TrainingModule,
    FinetuneModule,
)
REGISTRY: dict[str, type[Msg]] = {m.TYPE: m for module in MODULES for m in module.messages()}
"""Every message type by name, to show a transaction's messages field by field."""
MAX_BLOCKS = 50
"""How many blocks a list shows (one RPC call each)."""


@dataclass(frozen=True)
class MsgView:
    """One message of a transaction: its type and its fields (JSON), or why they could not be decoded."""

    type: str
    fields: Any


@dataclass(frozen=True)
class TxView:
    """A transaction as the explorer shows it; a beacon transaction (the proposer's) has no signer."""

    hash: str
    height: int
    signer: str
    memo: str
    fee: int
    msgs: tuple[MsgView, ...]
    code: int | None = None
    log: str = ""
    data: bytes = b""


@dataclass(frozen=True)
class BlockView:
    """A block's header fields and its transactions."""

    height: int
    hash: str
    time: str
    txs: tuple[TxView, ...]


def decode_tx(raw: bytes, height: int) -> TxView:
    """A transaction's signer, memo, fee and messages, decoded with the chain's own types."""
    digest = tx_hash(raw).hex().upper()
    if raw.startswith(BEACON_TX_PREFIX):
        return TxView(digest, height, "", "", 0, (MsgView("beacon block (the proposer's)", None),))
    try:
        tx = decode(SignedTx, raw)
    except DecodeError as e:
        return TxView(digest, height, "", "", 0, (MsgView("undecodable", str(e)),))
    signer = encode_address(address_from_pubkey(tx.pub_key))
    msgs = tuple(_msg_view(m.type, m.value) for m in tx.body.msgs)
    return TxView(digest, height, signer, tx.body.memo, tx.body.fee, msgs)


def _msg_view(kind: str, value: bytes) -> MsgView:
    """A message's fields by its registered type (a type the chain does not know shows its size only)."""
    tp = REGISTRY.get(kind)
    if tp is None:
        return MsgView(kind, f"{len(value)} bytes")
    try:
        return MsgView(kind, to_json(decode(tp, value)))
    except DecodeError as e:
        return MsgView(kind, f"undecodable: {e}")


def block(client: ChainClient, height: int, with_results: bool = False) -> BlockView:
    """The block at `height` (0: the latest); `with_results` also looks up each transaction's result code."""
    doc = client.call("block", height=str(height)) if height else client.call("block")
    header = doc["block"]["header"]
    number = int(header["height"])
    raws = [base64.b64decode(t) for t in doc["block"]["data"]["txs"] or []]
    txs = tuple(decode_tx(raw, number) for raw in raws)
    if with_results:
        txs = tuple(_with_result(client, t) for t in txs)
    return BlockView(number, str(doc["block_id"]["hash"]), str(header["time"]), txs)


def _with_result(client: ChainClient, tx: TxView) -> TxView:
    """`tx` with its result code and log (from the node's transaction index)."""
    try:
        return _result(tx, client.call("tx", hash="0x" + tx.hash)["tx_result"])
    except ClientError:
        return tx


def _result(tx: TxView, result: dict[str, Any]) -> TxView:
    """`tx` with the code, log and data of its CometBFT `tx_result`."""
    data = base64.b64decode(result.get("data") or "")
    return TxView(**{**vars(tx), "code": int(result.get("code", 0)), "log": str(result.get("log", "")), "data": data})


def transaction(client: ChainClient, hash_hex: str) -> TxView:
    """A committed transaction by hash, with its result; ValueError if `hash_hex` is not hex."""
    bytes.fromhex(hash_hex)
    found = client.call("tx", hash="0x" + hash_hex)
    return _result(decode_tx(base64.b64decode(found["tx"]), int(found["height"])), found["tx_result"])


def recent_blocks(client: ChainClient, top: int, count: int = MAX_BLOCKS) -> list[BlockView]:
    """Up to `count` blocks from `top` down (newest first)."""
    return [block(client, h) for h in range(top, max(top - count, 0), -1)]


def recent_requests(client: ChainClient, blocks: list[BlockView]) -> Iterator[tuple[int, str, str]]:
    """(height, request id, model) of every inference request started in `blocks`; the chain numbers an API key's
    requests, so their ids are in the transaction results."""
    for b in blocks:
        for tx in b.txs:
            starts = [m.fields for m in tx.msgs if m.type == MsgStartRequest.TYPE and isinstance(m.fields, dict)]
            if len(starts) == 1:
                request_id = str(starts[0].get("request_id") or _with_result(client, tx).data.hex())
                yield b.height, request_id, str(starts[0].get("model", ""))


@dataclass(frozen=True)
class Release:
    """A node's pay for one cycle, released at settlement: paid out, burned, and the training fund's part."""

    height: int
    node: str
    cycle: int
    released: int
    burned: int
    training_fund: int


def releases(client: ChainClient, top: int, count: int = MAX_BLOCKS) -> list[Release] | None:
    """The `verification_release` events of the `count` blocks below `top` (newest first), from CometBFT's block
    results; None if the node serves no block results (the embedded engine)."""
    found: list[Release] = []
    for height in range(top - 1, max(top - 1 - count, 0), -1):
        try:
            result = client.call("block_results", height=str(height))
        except ClientError:
            return found if found or height < top - 1 else None
        for event in result.get("finalize_block_events") or []:
            if event.get("type") == "verification_release":
                a = {x["key"]: x["value"] for x in event.get("attributes") or []}
                numbers = (int(a["cycle"]), int(a["released"]), int(a["burned"]), int(a["training_fund"]))
                found.append(Release(height, str(a["node"]), *numbers))
    return found


class WeightHistory:
    """Each node's Race weight per tallied cycle, as sampled from `race/nodes` (the chain keeps only the last)."""

    def __init__(self, max_cycles: int = 500) -> None:
        self.max_cycles = max_cycles
        self.lock = threading.Lock()
        self.weights: dict[int, dict[str, int]] = {}

    def sample(self, nodes: tuple[race.NodeInfo, ...]) -> None:
        """Remember every node's last tallied outcome."""
        with self.lock:
            for n in nodes:
                if n.last_outcome is not None:
                    self.weights.setdefault(n.last_outcome.cycle, {})[encode_address(n.address)] = n.last_outcome.weight
            for cycle in sorted(self.weights)[: -self.max_cycles]:
                del self.weights[cycle]

    def series(self) -> dict[str, list[tuple[int, int]]]:
        """Per node, (cycle, weight) in cycle order."""
        with self.lock:
            out: dict[str, list[tuple[int, int]]] = {}
            for cycle in sorted(self.weights):
                for address, weight in self.weights[cycle].items():
                    out.setdefault(address, []).append((cycle, weight))
            return out


def losses(training_dir: Path | None, job_id: int) -> list[Progress]:
    """This node's mean inner loss per round of a training job it trained (none if it trained none)."""
    if training_dir is None:
        return []
    return read_progress(training_dir / f"job{job_id}")


def pretty(value: Any) -> str:
    """A chain value as indented JSON text."""
    return json.dumps(value, indent=1, sort_keys=True)
