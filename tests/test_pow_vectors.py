"""Seeds, input sequences, permutations, targets, output keys and distance."""

from __future__ import annotations

import pytest
import torch

from racenet.pow.presets import TINY
from racenet.pow.vectors import (
    TARGETS,
    NonceBatch,
    distances,
    input_seed,
    is_appropriate,
    node_seed,
    output_keys,
    prepare,
    target_indices,
    target_vectors,
)

RACE = bytes(32)
NODE = node_seed(b"\x01" * 32)


def test_node_seed_is_32_bytes_and_depends_on_the_key() -> None:
    assert len(NODE) == 32
    assert NODE == node_seed(b"\x01" * 32) != node_seed(b"\x02" * 32)


def test_inputs_are_tokens_in_range_and_permutations_are_permutations() -> None:
    batch = prepare(RACE, NODE, range(100), TINY)
    assert batch.tokens.shape == (100, TINY.seq_len)
    assert int(batch.tokens.min()) >= 0 and int(batch.tokens.max()) < TINY.vocab_size
    assert batch.permutations.shape == (100, TINY.d_model)
    assert torch.equal(batch.permutations.sort(dim=1).values, torch.arange(TINY.d_model).expand(100, -1))


def test_permutation_and_input_depend_on_nonce_node_and_race_seed() -> None:
    base = prepare(RACE, NODE, [7], TINY)
    others = [
        prepare(RACE, NODE, [8], TINY),
        prepare(RACE, node_seed(b"\x02" * 32), [7], TINY),
        prepare(b"\x01" * 32, NODE, [7], TINY),
    ]
    for other in others:
        assert not torch.equal(base.permutations, other.permutations)
        assert not torch.equal(base.tokens, other.tokens)
    assert torch.equal(prepare(RACE, NODE, [7], TINY).permutations, base.permutations)


@pytest.mark.parametrize("nonce", [-1, 1 << 64])
def test_nonce_must_be_u64(nonce: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        input_seed(RACE, NODE, nonce)


def test_targets_are_deterministic_unit_vectors_per_race() -> None:
    targets = target_vectors(RACE, TINY)
    assert targets.dtype == torch.float64 and targets.shape == (TARGETS, TINY.d_model)
    assert torch.allclose(targets.norm(dim=1), torch.ones(TARGETS, dtype=torch.float64), atol=1e-12)
    assert torch.equal(targets, target_vectors(RACE, TINY))
    assert not torch.equal(targets, target_vectors(b"\x01" * 32, TINY))


def test_every_key_sign_moves_the_target() -> None:
    """H4: flipping any one of the key's signs picks another target, so a predictor that gets one sign wrong
    learns nothing about the distance; values past the key do not matter."""
    output = torch.linspace(-1, 1, TINY.d_model, dtype=torch.float64).roll(5).unsqueeze(0)
    mix = torch.tensor([123456789])
    base = int(target_indices(output_keys(output, TINY.key_bits), mix)[0])
    for i in range(TINY.key_bits):
        flipped = output.clone()
        flipped[0, i] = -flipped[0, i]
        assert int(target_indices(output_keys(flipped, TINY.key_bits), mix)[0]) != base, f"sign {i}"
    small_key = TINY.key_bits // 2
    beyond = output.clone()
    beyond[0, small_key:] *= -1
    assert int(target_indices(output_keys(beyond, small_key), mix)[0]) == int(
        target_indices(output_keys(output, small_key), mix)[0]
    )


def test_targets_spread_over_every_row() -> None:
    keys = torch.randint(0, 1 << 16, (50_000, 4), generator=torch.Generator().manual_seed(1))
    mix = torch.randint(0, 1 << 32, (50_000,), generator=torch.Generator().manual_seed(2))
    counts = torch.bincount(target_indices(keys, mix), minlength=TARGETS)
    assert len(counts) == TARGETS and int(counts.min()) > 0


def test_distance_permutes_and_normalises_the_output_against_its_target() -> None:
    targets = target_vectors(RACE, TINY)
    permutation = torch.randperm(TINY.d_model, generator=torch.Generator().manual_seed(0))
    output = torch.randn(1, TINY.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    batch = NonceBatch([0], torch.zeros(1, TINY.seq_len, dtype=torch.int64), permutation[None], torch.tensor([7]))
    row = int(target_indices(output_keys(output, TINY.key_bits), batch.mix)[0])
    unit = output[0] / output[0].norm()
    expected = float((unit[permutation] - targets[row]).norm())
    assert float(distances(output, batch, targets, TINY.key_bits)[0]) == pytest.approx(expected, abs=1e-12)
    identity = NonceBatch([0], batch.tokens, torch.arange(TINY.d_model)[None], batch.mix)
    assert float(distances(output, identity, targets, TINY.key_bits)[0]) != pytest.approx(expected, abs=1e-6)


def test_appropriate_is_strictly_below_the_threshold() -> None:
    assert is_appropriate(0.99, 1.0)
    assert not is_appropriate(1.0, 1.0)
