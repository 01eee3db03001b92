"""A node's Race proof: the Merkle tree over its appropriate vectors' nonces, and its openings."""

from __future__ import annotations

from racenet.chain.modules.race.selection import expected_openings
from racenet.chain.modules.race.types import Leaf, proof_leaf
from racenet.crypto.merkle import merkle_proofs, merkle_root


class ProofTree:
    """Sorted, distinct nonces bound to a node key; commits as (root, count) and opens leaves."""

    def __init__(self, pub_key: bytes, nonces: list[int]) -> None:
        self.nonces = sorted(set(nonces))
        if not self.nonces:
            raise ValueError("a proof needs at least one nonce")
        self.count = len(self.nonces)
        self.leaves = [proof_leaf(pub_key, self.count, i, n) for i, n in enumerate(self.nonces)]
        self.root = merkle_root(self.leaves)

    def open(self, challenged: list[int]) -> tuple[Leaf, ...]:
        """The reveal for a challenge: each challenged leaf and its successor, with Merkle paths."""
        indices = expected_openings(challenged, self.count)
        paths = merkle_proofs(self.leaves, indices)
        return tuple(Leaf(i, self.nonces[i], tuple(p)) for i, p in zip(indices, paths, strict=True))
