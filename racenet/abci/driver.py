"""An in-process consensus driver: runs an App through the ABCI block lifecycle.

The fast test suite and the embedded single-validator engine use it instead of
CometBFT; it makes exactly the calls CometBFT makes, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from racenet.chain.app import App
from racenet.chain.genesis import Genesis
from racenet.chain.types import BlockRequest, FinalizeBlockResult, InitChainResult

MAX_BLOCK_TX_BYTES = 4 * 1024 * 1024

BeforeCommit = Callable[[BlockRequest, FinalizeBlockResult], None]


class ProposalRejected(RuntimeError):
    """The App refused a proposal in ProcessProposal."""


class Driver:
    """Feeds blocks to an App: prepare, process, finalize, commit."""

    def __init__(self, app: App) -> None:
        self.app = app

    def init_chain(self, genesis: Genesis) -> InitChainResult:
        """InitChain with the genesis document."""
        return self.app.init_chain(genesis.init_chain_request())

    def propose(self, txs: Sequence[bytes], time: int) -> BlockRequest:
        """The next block as its proposer would build it from mempool `txs`."""
        draft = BlockRequest(self.app.height + 1, time, tuple(txs))
        return BlockRequest(draft.height, time, self.app.prepare_proposal(draft, MAX_BLOCK_TX_BYTES))

    def execute(self, block: BlockRequest, before_commit: BeforeCommit | None = None) -> FinalizeBlockResult:
        """Process, finalize and commit a block; `before_commit` sees the results first."""
        if not self.app.process_proposal(block):
            raise ProposalRejected(f"block {block.height} rejected by ProcessProposal")
        result = self.app.finalize_block(block)
        if before_commit is not None:
            before_commit(block, result)
        self.app.commit()
        return result

    def run_block(self, txs: Sequence[bytes], time: int) -> FinalizeBlockResult:
        """Propose and execute one block carrying `txs`."""
        return self.execute(self.propose(txs, time))
