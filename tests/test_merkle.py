"""Merkle roots and inclusion proofs for every size and index; tampering fails."""

from __future__ import annotations

import pytest

from racenet.crypto.merkle import leaf_hash, merkle_proof, merkle_proofs, merkle_root, node_hash, verify_proof


def leaves(n: int) -> list[bytes]:
    return [f"leaf{i}".encode() for i in range(n)]


def test_small_trees_by_hand() -> None:
    a, b, c = leaves(3)
    assert merkle_root([a]) == leaf_hash(a)
    assert merkle_root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b))
    assert merkle_root([a, b, c]) == node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 33])
def test_every_proof_verifies_and_tampering_fails(n: int) -> None:
    ls = leaves(n)
    root = merkle_root(ls)
    assert merkle_proofs(ls, list(range(n))) == [merkle_proof(ls, i) for i in range(n)]
    for i in range(n):
        proof = merkle_proof(ls, i)
        assert verify_proof(root, ls[i], i, n, proof)
        assert not verify_proof(root, b"other", i, n, proof)
        if n > 1:
            assert not verify_proof(root, ls[i], (i + 1) % n, n, proof)
            assert not verify_proof(root, ls[i], i, n, proof[:-1])
            assert not verify_proof(root, ls[i], i, n, [*proof, b"\x00" * 32])


def test_out_of_range() -> None:
    with pytest.raises(IndexError):
        merkle_proof(leaves(2), 2)
    assert not verify_proof(merkle_root(leaves(2)), b"leaf0", -1, 2, [])
    with pytest.raises(ValueError):
        merkle_root([])
