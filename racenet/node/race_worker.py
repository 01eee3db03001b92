"""The node's Race loop: watch the chain and, with no manual step, mine, commit, reveal and vote.

Mining runs from the moment the race seed is out until block `commit_deadline - COMMIT_MARGIN_BLOCKS` is
committed; the commitment goes out at once and lands by the race window's last block, the deadline the chain
enforces (a block or two of margin: the node must see the height, finish its batch and reach the proposer).

Each cycle's progress (nonces found, whether the commitment, reveal and votes went out) is saved
in `<state_dir>/cycle-<n>.json` after every step, so a restarted node resumes where it stopped:
found nonces are never lost, and nothing is sent twice.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from racenet.chain.errors import Code
from racenet.chain.module import Msg
from racenet.chain.modules import auth, race
from racenet.chain.modules.race import CycleInfo, MsgCommitProof, MsgReveal, MsgVote, Phase, ProofTree
from racenet.crypto.address import encode_address
from racenet.node.client import ChainClient, ClientError, TxRejected
from racenet.node.compute import ComputeThread
from racenet.node.sender import TxSender

if TYPE_CHECKING:
    from racenet.pow.race import Race

log = logging.getLogger(__name__)

POLL_SECONDS = 0.3
COMMIT_MARGIN_BLOCKS = 2


@dataclass
class CycleState:
    """What this node did in one cycle (persisted after each step)."""

    cycle: int
    nonces: list[int] = field(default_factory=list)
    next_nonce: int = 0
    tried: int = 0
    committed: bool = False
    revealed: bool = False
    voted: list[str] = field(default_factory=list)


class RaceWorker:
    """Drives one node through every Race cycle."""

    def __init__(
        self,
        client: ChainClient,
        sender: TxSender,
        compute: ComputeThread,
        state_dir: Path,
        *,
        compute_budget: float = 1.0,
        should_yield: Callable[[], bool] | None = None,
    ) -> None:
        self.client = client
        self.sender = sender
        self.compute = compute
        self.key = sender.key
        self.address = encode_address(self.key.public_key.address)
        self.state_dir = state_dir
        self.compute_budget = compute_budget
        self.should_yield = should_yield
        self.stop = threading.Event()
        self._race: Race | None = None
        state_dir.mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        """Step through cycles until `stop` is set; errors are logged and the step retried (the node stays up)."""
        while not self.stop.is_set():
            try:
                self.step()
            except ClientError as e:
                log.warning("race worker: %s", e)
            except Exception:
                log.exception("race worker: unexpected error; retrying")
            self.stop.wait(POLL_SECONDS)

    def step(self) -> None:
        """Do what the current phase asks of this node, if it has not been done yet."""
        info = self.client.query(race.CYCLE)
        state = self._load(info.cycle)
        last_mining_block = info.phase_starts[Phase.REVEAL] - 1 - COMMIT_MARGIN_BLOCKS
        if info.phase == Phase.RACE and info.race_seed and info.height < last_mining_block:
            self._mine(info, state, last_mining_block)
        if (
            info.phase == Phase.RACE
            and info.race_seed
            and state.nonces
            and not state.committed
            and not self.stop.is_set()
        ):
            self._commit(state)
        elif info.phase == Phase.REVEAL and state.committed and not state.revealed:
            self._reveal(state)
        elif info.phase in (Phase.VOTE, Phase.ESCALATE):
            self._vote(info, state)

    def _race_for(self, info: CycleInfo) -> Race:
        """The cycle's Race (model, targets, threshold), built once per race seed on the compute thread."""
        from racenet.pow.race import build_race

        if self._race is None or self._race.race_seed != info.race_seed:
            self._race = self.compute.run(build_race, info.preset, info.race_seed)
        return self._race

    def _mine(self, info: CycleInfo, state: CycleState, last_mining_block: int) -> None:
        """Mine until the chain commits `last_mining_block`, saving finds as they come.

        Each batch runs on the compute thread, so a user request waits at most one batch; the budget's rests and
        the yields to user requests wait on this thread, so inference runs meanwhile.
        """
        from racenet.pow.miner import Miner, MiningStats

        def advance(so_far: MiningStats) -> None:
            state.next_nonce = so_far.next_nonce

        cycle_race = self._race_for(info)
        done = threading.Event()
        watcher = threading.Thread(target=self._watch_race_end, args=(last_mining_block, done, state), daemon=True)
        watcher.start()
        try:
            with Miner(cycle_race, self.key.public_key.raw, execute=self.compute.run) as miner:
                stats = miner.run(
                    math.inf,
                    state.nonces,
                    start_nonce=state.next_nonce,
                    stop=done,
                    should_yield=self.should_yield,
                    compute_budget=self.compute_budget,
                    on_batch=advance,
                )
        finally:
            done.set()
            watcher.join()
        state.tried += stats.tried
        self._save(state)
        log.info(
            "cycle %d: tried %d nonces (%.0f/s), %d appropriate vectors",
            state.cycle,
            stats.tried,
            stats.nonces_per_second,
            len(state.nonces),
        )

    def _watch_race_end(self, last_mining_block: int, done: threading.Event, state: CycleState) -> None:
        """Stop mining when `last_mining_block` is committed (or the worker stops); save new finds."""
        saved = -1
        while not done.is_set():
            if self.stop.is_set():
                break
            try:
                if self.client.height() >= last_mining_block:
                    break
            except ClientError as e:
                log.warning("race worker: %s", e)
            if len(state.nonces) != saved:
                saved = len(state.nonces)
                self._save(state)
            done.wait(POLL_SECONDS)
        done.set()

    def _commit(self, state: CycleState) -> None:
        tree = ProofTree(self.key.public_key.raw, state.nonces)
        self._send(state, [MsgCommitProof(state.cycle, tree.root, tree.count)])
        state.committed = True
        self._save(state)

    def _reveal(self, state: CycleState) -> None:
        challenge = self.client.query(race.CHALLENGE, self.key.public_key.address)
        if not challenge.indices:
            return
        tree = ProofTree(self.key.public_key.raw, state.nonces)
        self._send(state, [MsgReveal(state.cycle, tree.open(list(challenge.indices)))])
        state.revealed = True
        self._save(state)

    def _vote(self, info: CycleInfo, state: CycleState) -> None:
        """Check every claim this node is asked to validate and send which opened nonces failed, in bounded txs.

        A claim counts as voted once its transaction is in a block or refused; a transport error leaves it
        for the next step, so no vote is lost to a node restart or a full mempool.
        """
        from racenet.pow.verifier import verify_nonces

        assigned = self.client.query(race.ASSIGNMENTS, self.key.public_key.address).participants
        todo = [p for p in assigned if encode_address(p) not in state.voted]
        if not todo:
            return
        cycle_race = self._race_for(info)
        per_tx = self.client.query(auth.PARAMS).max_msgs_per_tx
        for start in range(0, len(todo), per_tx):
            batch = todo[start : start + per_tx]
            votes: list[Msg] = []
            for participant in batch:
                revealed = self.client.query(race.REVEAL, participant)
                if revealed is None:
                    continue
                ok = self.compute.run(verify_nonces, cycle_race, revealed.pub_key, list(revealed.nonces))
                failed = tuple(i for i, passed in enumerate(ok) if not passed)
                votes.append(MsgVote(cycle=state.cycle, participant=participant, failed=failed))
                log.info(
                    "cycle %d: %s — %d of %d opened nonces failed",
                    state.cycle,
                    encode_address(participant),
                    len(failed),
                    len(ok),
                )
            if votes:
                self._send(state, votes)
            state.voted += [encode_address(p) for p in batch]
            self._save(state)

    def _send(self, state: CycleState, msgs: list[Msg]) -> None:
        """Send and wait. A rejection ends the step too (retrying cannot fix it); logged unless already done."""
        try:
            self.sender.send(msgs)
        except TxRejected as e:
            if e.code != Code.ALREADY_DONE:
                log.warning("cycle %d: %s", state.cycle, e)

    def _path(self, cycle: int) -> Path:
        return self.state_dir / f"cycle-{cycle}.json"

    def _load(self, cycle: int) -> CycleState:
        """The saved state of a cycle. Nonces are mined in order and a batch's finds are saved together, so mining
        resumes after the last find even if a kill came before that batch's next nonce was saved."""
        path = self._path(cycle)
        if not path.exists():
            return CycleState(cycle)
        state = CycleState(**json.loads(path.read_text()))
        state.next_nonce = max([state.next_nonce, *(n + 1 for n in state.nonces)])
        return state

    def _save(self, state: CycleState) -> None:
        """Write the cycle's state atomically."""
        tmp = self._path(state.cycle).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state)))
        tmp.replace(self._path(state.cycle))
