"""One account's transaction sender, shared by everything that signs (Race steps, requests, the CLI).

It keeps the account's next sequence locally so concurrent senders never reuse one, and
re-reads it from the chain when a node answers `wrong_sequence` (e.g. a transaction that passed
CheckTx was dropped from the mempool). The fee defaults to what the chain's fee schedule
(`bank/params`, read once) asks for the transaction's bytes and messages.
"""

from __future__ import annotations

import threading

from racenet.chain.errors import Code
from racenet.chain.module import Msg
from racenet.chain.modules import bank
from racenet.chain.tx import build_tx
from racenet.crypto.keys import PrivateKey
from racenet.node.client import ChainClient, TxOutcome, TxRejected

MAX_FEE_FIELD_BYTES = 10
"""A fee's varint is at most 10 bytes, so a draft with fee 0 plus this bounds the final size."""


class TxSender:
    """Signs and broadcasts an account's transactions with locally tracked sequences."""

    def __init__(self, client: ChainClient, key: PrivateKey, fee: int | None = None) -> None:
        self.client = client
        self.key = key
        self.fee = fee
        self.fees: bank.Params | None = None
        self.lock = threading.Lock()
        self.chain_id = ""
        self.next_sequence: int | None = None

    def broadcast(self, msgs: list[Msg], memo: str = "") -> str:
        """Submit through CheckTx; return the tx hash or raise TxRejected."""
        with self.lock:
            for attempt in range(2):
                if self.next_sequence is None or attempt:
                    self.chain_id = self.client.chain_id()
                    self.next_sequence = self.client.sequence(self.key.public_key.address)
                tx = self._build(self.next_sequence, msgs, memo)
                try:
                    hash_hex = self.client.broadcast(tx)
                except TxRejected as e:
                    if e.code == Code.WRONG_SEQUENCE and not attempt:
                        continue
                    raise
                self.next_sequence += 1
                return hash_hex
        raise AssertionError("unreachable")

    def _build(self, sequence: int, msgs: list[Msg], memo: str) -> bytes:
        """The signed transaction, paying the fixed fee or the schedule's fee for its size."""
        if self.fee is not None:
            return build_tx(self.key, self.chain_id, sequence, self.fee, msgs, memo)
        if self.fees is None:
            self.fees = self.client.query(bank.PARAMS)
        draft = build_tx(self.key, self.chain_id, sequence, 0, msgs, memo)
        fee = self.fees.required_fee(len(draft) + MAX_FEE_FIELD_BYTES, [m.WORK for m in msgs])
        return build_tx(self.key, self.chain_id, sequence, fee, msgs, memo)

    def send(self, msgs: list[Msg], memo: str = "", timeout: float = 30.0) -> TxOutcome:
        """Broadcast and wait until the transaction is in a block; TxRejected if it failed there."""
        outcome = self.client.wait_for_tx(self.broadcast(msgs, memo), timeout)
        if outcome.code != 0:
            with self.lock:
                self.next_sequence = None
            raise TxRejected(outcome.code, outcome.log)
        return outcome
