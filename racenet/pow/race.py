"""One Race: the model, targets and threshold built from a race seed, and the distance of any node's nonces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from racenet.pow.model import RaceTransformer, build_model
from racenet.pow.presets import Preset, get_preset
from racenet.pow.rng import SEED_SIZE
from racenet.pow.vectors import NonceBatch, distances, node_seed, prepare, target_vectors

# Matrix kernels pick other code paths for few rows (measured: under 12 rows for tiny and small, under 64 for
# paper), which changes the last bits of the output. Forward passes therefore run on at least MIN_BATCH nonces
# (64 rows), padding smaller batches, so a nonce's output does not depend on the batch it is computed in.
MIN_BATCH = 16


@dataclass(frozen=True)
class Race:
    """A race's shared state: preset, race seed, seeded model, target vectors and distance threshold."""

    preset: Preset
    race_seed: bytes
    model: RaceTransformer
    targets: torch.Tensor
    threshold: float

    def prepare(self, node: bytes, nonces: Sequence[int]) -> NonceBatch:
        """Inputs and permutations of `nonces` for node seed `node` (no forward pass)."""
        return prepare(self.race_seed, node, nonces, self.preset)

    def outputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """The model's output vectors for token ids (B, T), computed in a batch of at least MIN_BATCH."""
        rows = len(tokens)
        if rows < MIN_BATCH:
            tokens = torch.cat([tokens, tokens[:1].expand(MIN_BATCH - rows, -1)])
        with torch.inference_mode():
            out: torch.Tensor = self.model(tokens)
        return out[:rows]

    def distances(self, batch: NonceBatch) -> torch.Tensor:
        """Distance of each nonce in `batch` to its target (float64)."""
        if not batch.nonces:
            return torch.empty(0, dtype=torch.float64)
        return distances(self.outputs(batch.tokens), batch, self.targets, self.preset.key_bits)

    def node_distances(self, public_key: bytes, nonces: Sequence[int]) -> torch.Tensor:
        """Distance of each of a node's nonces to its target, in one batch."""
        return self.distances(self.prepare(node_seed(public_key), nonces))


def build_race(
    preset: Preset | str, race_seed: bytes, *, dtype: torch.dtype = torch.float32, threshold: float | None = None
) -> Race:
    """Build the race of `race_seed`: model in `dtype` (fp32 is the reference), the preset's calibrated threshold."""
    chosen = get_preset(preset)
    if len(race_seed) != SEED_SIZE:
        raise ValueError(f"a race seed is {SEED_SIZE} bytes, got {len(race_seed)}")
    return Race(
        preset=chosen,
        race_seed=race_seed,
        model=build_model(chosen, race_seed, dtype),
        targets=target_vectors(race_seed, chosen),
        threshold=chosen.threshold if threshold is None else threshold,
    )
