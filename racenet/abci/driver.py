"""An in-process consensus driver: runs an App through the ABCI block lifecycle.

The fast test suite and the embedded single-validator engine use it instead of
CometBFT; it makes exactly the calls CometBFT makes, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from racenet.chain.app import App, VoteExtender
from racenet.chain.genesis import Genesis
from racenet.chain.modules.beacon import parse_beacon_tx, vote_extension_sign_bytes
from racenet.chain.types import BlockRequest, ExtendedCommit, ExtendedVote, FinalizeBlockResult, InitChainResult
from racenet.crypto.keys import PrivateKey

MAX_BLOCK_TX_BYTES = 4 * 1024 * 1024

BeforeCommit = Callable[[BlockRequest, FinalizeBlockResult], None]


class ProposalRejected(RuntimeError):
    """The App refused a proposal in ProcessProposal."""


@dataclass(frozen=True)
class Validator:
    """A simulated validator: its consensus key (signs its vote extensions) and its beacon agent."""

    consensus_key: PrivateKey
    agent: VoteExtender


class Driver:
    """Feeds blocks to an App: prepare (with the last commit's vote extensions), process, extend votes,
    finalize, commit — for every simulated validator, as CometBFT would."""

    def __init__(self, app: App, validators: Sequence[Validator] = ()) -> None:
        self.app = app
        self.validators = tuple(validators)
        self.last_commit = ExtendedCommit()

    def init_chain(self, genesis: Genesis) -> InitChainResult:
        """InitChain with the genesis document."""
        return self.app.init_chain(genesis.init_chain_request())

    def propose(self, txs: Sequence[bytes], time: int) -> BlockRequest:
        """The next block as its proposer would build it from mempool `txs`."""
        draft = BlockRequest(self.app.height + 1, time, tuple(txs))
        chosen = self.app.prepare_proposal(draft, MAX_BLOCK_TX_BYTES, self.last_commit)
        return BlockRequest(draft.height, time, chosen)

    def decide(self, txs: Sequence[bytes], time: int) -> BlockRequest:
        """A block as consensus might decide it: the proposer's beacon transaction, then `txs` unchecked."""
        head = self.app.prepare_proposal(
            BlockRequest(self.app.height + 1, time, ()), MAX_BLOCK_TX_BYTES, self.last_commit
        )
        return BlockRequest(self.app.height + 1, time, (*head, *txs))

    def execute(
        self, block: BlockRequest, before_commit: BeforeCommit | None = None, *, check: bool = True
    ) -> FinalizeBlockResult:
        """Process (unless `check` is off), finalize and commit a block; `before_commit` sees the results first."""
        if check and not self.app.process_proposal(block):
            raise ProposalRejected(f"block {block.height} rejected by ProcessProposal")
        self.last_commit = self.extend_votes(block)
        result = self.app.finalize_block(block)
        if before_commit is not None:
            before_commit(block, result)
        self.app.commit()
        return result

    def extend_votes(self, block: BlockRequest) -> ExtendedCommit:
        """Every validator's signed vote extension for `block` (what the next proposer receives)."""
        beacon_block = parse_beacon_tx(block.txs[0]) if block.txs else None
        votes = []
        for v in self.validators:
            extension = v.agent.extension(self.app, block.height, beacon_block)
            if not self.app.verify_vote_extension(extension):
                continue
            sign_bytes = vote_extension_sign_bytes(self.app.chain_id, block.height, 0, extension)
            address = v.consensus_key.public_key.address
            votes.append(ExtendedVote(address, extension, v.consensus_key.sign(sign_bytes)))
        return ExtendedCommit(0, tuple(votes))

    def run_block(self, txs: Sequence[bytes], time: int) -> FinalizeBlockResult:
        """Propose and execute one block carrying `txs`."""
        return self.execute(self.propose(txs, time))
