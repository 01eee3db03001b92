"""The Race cycle as a pure function of height: which cycle and phase a block belongs to."""

from __future__ import annotations

from dataclasses import dataclass

from racenet.chain.modules.race.types import Params, Phase


@dataclass(frozen=True)
class Schedule:
    """Cycle arithmetic for a chain whose first cycle starts at `start`."""

    params: Params
    start: int

    @property
    def length(self) -> int:
        """Blocks per cycle."""
        p = self.params
        return p.race_blocks + p.reveal_blocks + p.vote_blocks + p.escalation_blocks

    def cycle(self, height: int) -> int:
        """The cycle a block height belongs to."""
        return max(height - int(self.start), 0) // self.length

    def cycle_start(self, cycle: int) -> int:
        """First height of a cycle (its race seed is bound there)."""
        return self.start + cycle * self.length

    def phase_starts(self, cycle: int) -> dict[Phase, int]:
        """First height of each phase of a cycle."""
        p = self.params
        s = self.cycle_start(cycle)
        return {
            Phase.RACE: s,
            Phase.REVEAL: s + p.race_blocks,
            Phase.VOTE: s + p.race_blocks + p.reveal_blocks,
            Phase.ESCALATE: s + p.race_blocks + p.reveal_blocks + p.vote_blocks,
        }

    def phase(self, height: int) -> Phase:
        """The phase a block height belongs to."""
        current = Phase.RACE
        for phase, first in self.phase_starts(self.cycle(height)).items():
            if height >= first:
                current = phase
        return current

    def commit_deadline(self, cycle: int) -> int:
        """The last block that can hold a cycle's commitments: the race window's last."""
        return self.phase_starts(cycle)[Phase.REVEAL] - 1

    def tally_height(self, cycle: int) -> int:
        """The last block of a cycle, whose end-block hook tallies it."""
        return self.cycle_start(cycle + 1) - 1
