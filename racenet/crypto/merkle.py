"""A binary Merkle tree over byte leaves (RFC 6962 hashing), with inclusion proofs.

Leaves hash as SHA-256(0x00 ‖ leaf) and inner nodes as SHA-256(0x01 ‖ left ‖ right), so a
leaf can never pass for an inner node. An odd node at any level is promoted unchanged,
as in RFC 6962's split at the largest power of two below n. The root does not commit to
the number of leaves: a caller that needs that binding puts the count inside each leaf.
"""

from __future__ import annotations

import hashlib


def leaf_hash(leaf: bytes) -> bytes:
    """Hash of one leaf."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an inner node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n ≥ 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(_root(hashes[:k]), _root(hashes[k:]))


def merkle_root(leaves: list[bytes]) -> bytes:
    """Root of the tree over `leaves` (at least one)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    return _root([leaf_hash(x) for x in leaves])


def _path(hashes: list[bytes], index: int) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(hashes[:k], index), _root(hashes[k:])]
    return [*_path(hashes[k:], index - k), _root(hashes[:k])]


def merkle_proof(leaves: list[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of range for {len(leaves)} leaves")
    return _path([leaf_hash(x) for x in leaves], index)


def merkle_proofs(leaves: list[bytes], indices: list[int]) -> list[list[bytes]]:
    """Proofs for several leaves, hashing each leaf once."""
    hashes = [leaf_hash(x) for x in leaves]
    return [_path(hashes, i) for i in indices]


def verify_proof(root: bytes, leaf: bytes, index: int, count: int, proof: list[bytes] | tuple[bytes, ...]) -> bool:
    """Whether `leaf` is leaf `index` of a `count`-leaf tree with this root."""
    if not 0 <= index < count:
        return False
    computed = _climb(leaf_hash(leaf), index, count, list(proof))
    return computed == root


def _climb(h: bytes, index: int, count: int, proof: list[bytes]) -> bytes | None:
    """Recompute the root from a leaf hash, consuming the proof bottom-up (None: wrong length)."""
    if count == 1:
        return h if not proof else None
    if not proof:
        return None
    k = _split(count)
    sibling = proof[-1]
    if index < k:
        sub = _climb(h, index, k, proof[:-1])
        return None if sub is None else node_hash(sub, sibling)
    sub = _climb(h, index - k, count - k, proof[:-1])
    return None if sub is None else node_hash(sibling, sub)
