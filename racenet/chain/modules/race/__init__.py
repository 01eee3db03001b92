"""race: the on-chain half of Proof-of-Work 2.0 — cycles, commitments, challenged reveals,
weighted validation votes, and Race weights as validator power."""

from racenet.chain.modules.race.module import RaceModule
from racenet.chain.modules.race.proof import ProofTree
from racenet.chain.modules.race.schedule import Phase, Schedule
from racenet.chain.modules.race.types import CommitProof, Leaf, Params, RegisterNode, Reveal, Vote, proof_leaf

__all__ = [
    "CommitProof",
    "Leaf",
    "Params",
    "Phase",
    "ProofTree",
    "RaceModule",
    "RegisterNode",
    "Reveal",
    "Schedule",
    "Vote",
    "proof_leaf",
]
