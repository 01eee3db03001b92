"""One account's transaction sender, shared by everything that signs (Race steps, requests, the CLI).

It keeps the account's next sequence locally so concurrent senders never reuse one, and
re-reads it from the chain when a node answers `wrong_sequence` (e.g. a transaction that passed
CheckTx failed in its block and so did not advance the sequence). The fee defaults to the
chain's minimum (`bank/params`), read once.
"""

from __future__ import annotations

import threading

from racenet.chain.errors import Code
from racenet.chain.module import Msg
from racenet.chain.modules import bank
from racenet.chain.tx import build_tx
from racenet.crypto.keys import PrivateKey
from racenet.node.client import ChainClient, TxOutcome, TxRejected


class TxSender:
    """Signs and broadcasts an account's transactions with locally tracked sequences."""

    def __init__(self, client: ChainClient, key: PrivateKey, fee: int | None = None) -> None:
        self.client = client
        self.key = key
        self.fee = fee
        self.lock = threading.Lock()
        self.chain_id = ""
        self.next_sequence: int | None = None

    def broadcast(self, msgs: list[Msg], memo: str = "") -> str:
        """Submit through CheckTx; return the tx hash or raise TxRejected."""
        with self.lock:
            if self.fee is None:
                self.fee = self.client.query(bank.PARAMS).min_fee
            for attempt in range(2):
                if self.next_sequence is None or attempt:
                    self.chain_id = self.client.chain_id()
                    self.next_sequence = self.client.sequence(self.key.public_key.address)
                tx = build_tx(self.key, self.chain_id, self.next_sequence, self.fee, msgs, memo)
                try:
                    hash_hex = self.client.broadcast(tx)
                except TxRejected as e:
                    if e.code == Code.WRONG_SEQUENCE and not attempt:
                        continue
                    raise
                self.next_sequence += 1
                return hash_hex
        raise AssertionError("unreachable")

    def send(self, msgs: list[Msg], memo: str = "", timeout: float = 30.0) -> TxOutcome:
        """Broadcast and wait until the transaction is in a block; TxRejected if it failed there."""
        outcome = self.client.wait_for_tx(self.broadcast(msgs, memo), timeout)
        if outcome.code != 0:
            with self.lock:
                self.next_sequence = None
            raise TxRejected(outcome.code, outcome.log)
        return outcome
