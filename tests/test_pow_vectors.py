"""Seeds, input sequences, permutations, target vector and distance."""

from __future__ import annotations

import pytest
import torch

from racenet.pow.presets import TINY
from racenet.pow.vectors import (
    distances,
    input_seed,
    is_appropriate,
    node_seed,
    prepare,
    target_vector,
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


def test_target_is_a_deterministic_unit_vector_per_race() -> None:
    target = target_vector(RACE, TINY)
    assert target.dtype == torch.float64 and target.shape == (TINY.d_model,)
    assert abs(float(target.norm()) - 1.0) < 1e-12
    assert torch.equal(target, target_vector(RACE, TINY))
    assert not torch.equal(target, target_vector(b"\x01" * 32, TINY))


def test_distance_permutes_and_normalises_the_output() -> None:
    target = target_vector(RACE, TINY)
    permutation = torch.randperm(TINY.d_model, generator=torch.Generator().manual_seed(0))
    output = torch.empty(TINY.d_model, dtype=torch.float64)
    output[permutation] = target * 3.0
    assert float(distances(output[None], permutation[None], target)[0]) < 1e-12
    assert float(distances(output[None], torch.arange(TINY.d_model)[None], target)[0]) > 0.5


def test_appropriate_is_strictly_below_the_threshold() -> None:
    assert is_appropriate(0.99, 1.0)
    assert not is_appropriate(1.0, 1.0)
