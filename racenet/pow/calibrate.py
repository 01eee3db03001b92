"""Calibration: the distance threshold for a difficulty, and the honest mismatch rate of float noise.

Threshold. A nonce is appropriate when its distance is below the threshold, so the threshold for difficulty D
is the 1/D quantile of the distance over nonces. The permutation and the mix are hashes of the input seed,
independent of the output, so every pairing of an output vector with another nonce's permutation and mix (the
target then picked by the output's key and that mix) is a sample from the same distribution: a batch of B
forward passes gives B^2 samples (`cross_distances`). We pool them over several race seeds and take the
empirical quantile; the per-seed quantiles show how much the threshold depends on the seed.

Noise. A node that mines in another dtype, batch size, thread count or matrix kernel than the validator sees
slightly different outputs; an appropriate vector close to the threshold can then fail to reproduce. The honest
mismatch rate is P(checker distance >= threshold | miner distance < threshold), measured on the same cross pairs;
it includes the outputs whose key (the signs that pick the target) differs between miner and checker.

Reproduce (2 cores; the shipped numbers are in presets.py and decision.py):

    racenet race calibrate --preset tiny --seeds 8 --nonces 16384 --noise --noise-seeds 4 --noise-nonces 2048
    racenet race calibrate --preset small --seeds 4 --nonces 4096 --noise
    racenet race calibrate --preset paper --seeds 4 --nonces 1024
    racenet race calibrate --preset paper --seeds 1 --nonces 256 --noise --noise-nonces 512

On a quiet 2-core machine: tiny 10 s, small 2 minutes, paper 2 minutes (threshold) and 8 minutes (noise).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from racenet.pow.model import RaceTransformer, build_model
from racenet.pow.presets import DIFFICULTY, Preset, get_preset
from racenet.pow.race import Race, build_race
from racenet.pow.vectors import NonceBatch, node_seed, output_keys, target_indices

CALIBRATION_NODE = node_seed(b"racenet-calibration")
NOISE_DTYPES = {"bf16": torch.bfloat16, "fp64": torch.float64}
ONE_BY_ONE = 32
CROSS_ROWS = 16


def calibration_seed(index: int) -> bytes:
    """The race seed number `index` used for calibration (tests use fresh indices)."""
    return hashlib.blake2b(index.to_bytes(8, "little"), digest_size=32, person=b"racenet-calib").digest()


def cross_distances(outputs: torch.Tensor, batch: NonceBatch, race: Race) -> torch.Tensor:
    """Distances of each output (any B1 of them) under every nonce's permutation and mix: B1 x B values, float64.

    Pair (i, j) permutes output i by nonce j's permutation and measures it against the target that output i's
    key and nonce j's mix pick; rows are done `CROSS_ROWS` at a time.
    """
    unit = outputs.double()
    unit = unit / unit.norm(dim=1, keepdim=True)
    keys = output_keys(outputs, race.preset.key_bits)
    rows = []
    for start in range(0, len(unit), CROSS_ROWS):
        chunk = unit[start : start + CROSS_ROWS]
        rows_of = torch.arange(len(chunk)).unsqueeze(1)
        permuted = chunk[rows_of.unsqueeze(2), batch.permutations.unsqueeze(0)]
        picked = race.targets[target_indices(keys[start : start + CROSS_ROWS].unsqueeze(1), batch.mix.unsqueeze(0))]
        rows.append(torch.linalg.vector_norm(permuted - picked, dim=2))
    return torch.cat(rows) if rows else torch.empty(0, len(batch.nonces), dtype=torch.float64)


def quantile_threshold(samples: torch.Tensor, difficulty: int) -> float:
    """The distance below which a fraction 1/difficulty of the samples lie (midpoint of the two neighbours)."""
    k = max(1, len(samples) // difficulty)
    lowest = samples.reshape(-1).topk(k + 1, largest=False).values
    return float((lowest[k - 1] + lowest[k]) / 2)


def seed_samples(race: Race, nonces: int, batch_size: int) -> torch.Tensor:
    """Cross-pair distance samples of one race from `nonces` forward passes of the calibration node."""
    parts = []
    for start in range(0, nonces, batch_size):
        batch = race.prepare(CALIBRATION_NODE, range(start, min(start + batch_size, nonces)))
        parts.append(cross_distances(race.outputs(batch.tokens), batch, race).reshape(-1))
    return torch.cat(parts)


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold, with each seed's own threshold and its pass rate at the pooled one (x difficulty)."""

    preset: str
    difficulty: int
    threshold: float
    per_seed: list[float]
    per_seed_rate: list[float]
    samples: int


def calibrate(
    preset: Preset | str,
    *,
    difficulty: int = DIFFICULTY,
    seeds: int = 4,
    nonces: int = 4096,
    batch_size: int = 256,
    on_seed: Callable[[int], None] | None = None,
) -> Calibration:
    """Threshold for `difficulty` from `seeds` race seeds x `nonces` forward passes (x `batch_size` permutations)."""
    chosen = get_preset(preset)
    pooled, per_seed = [], []
    for index in range(seeds):
        samples = seed_samples(build_race(chosen, calibration_seed(index)), nonces, batch_size)
        per_seed.append(quantile_threshold(samples, difficulty))
        pooled.append(samples)
        if on_seed is not None:
            on_seed(index)
    threshold = quantile_threshold(torch.cat(pooled), difficulty)
    rates = [float((samples < threshold).double().mean()) * difficulty for samples in pooled]
    return Calibration(chosen.name, difficulty, threshold, per_seed, rates, sum(map(len, pooled)))


@dataclass(frozen=True)
class Mismatch:
    """How often an appropriate vector of one setting (the miner) fails to reproduce in another (the checker)."""

    setting: str
    appropriate: int
    failed: int
    max_abs_diff: float

    @property
    def rate(self) -> float:
        """failed / appropriate (0 when nothing was appropriate)."""
        return self.failed / self.appropriate if self.appropriate else 0.0


def compare(miner: torch.Tensor, checker: torch.Tensor, batch: NonceBatch, race: Race) -> Mismatch:
    """Mismatch between two computations of the same nonces' outputs (the miner's may be the first few only),
    over all their pairings with the batch's permutations."""
    checker = checker[: len(miner)]
    mined = cross_distances(miner, batch, race) < race.threshold
    checked = cross_distances(checker, batch, race) < race.threshold
    diff = float((miner.double() - checker.double()).abs().max())
    return Mismatch("", int(mined.sum()), int((mined & ~checked).sum()), diff)


def noise_outputs(race: Race, tokens: torch.Tensor, others: dict[str, RaceTransformer]) -> dict[str, torch.Tensor]:
    """The same inputs' outputs computed the ways honest nodes differ: batch size, threads, kernel, dtype.

    The two one-nonce-at-a-time settings cover only the first `ONE_BY_ONE` inputs (they are slow).
    """
    threads = torch.get_num_threads()
    outputs = {"fp32 batch 256": race.outputs(tokens)}
    outputs["fp32 batch 64"] = torch.cat([race.outputs(tokens[i : i + 64]) for i in range(0, len(tokens), 64)])
    outputs["fp32 batch 1"] = torch.cat([race.outputs(tokens[i : i + 1]) for i in range(ONE_BY_ONE)])
    torch.set_num_threads(1)
    outputs["fp32 1 thread"] = race.outputs(tokens)
    torch.set_num_threads(threads)
    with torch.inference_mode():
        outputs["fp32 small-matrix kernel"] = torch.cat([race.model(tokens[i : i + 1]) for i in range(ONE_BY_ONE)])
        for name, model in others.items():
            outputs[name] = model(tokens)
    return outputs


def measure_noise(preset: Preset | str, *, seeds: int = 2, nonces: int = 1024) -> list[Mismatch]:
    """Honest mismatch rates of each way of computing in `noise_outputs` against fp32 at batch 256.

    "X -> fp32" is a miner computing as X checked by an fp32 validator; "fp32 -> bf16" is the reverse.
    """
    chosen = get_preset(preset)
    totals: dict[str, list[Mismatch]] = {}
    for index in range(seeds):
        race = build_race(chosen, calibration_seed(1000 + index))
        others = {name: build_model(chosen, race.race_seed, dtype) for name, dtype in NOISE_DTYPES.items()}
        for start in range(0, nonces, 256):
            batch = race.prepare(CALIBRATION_NODE, range(start, min(start + 256, nonces)))
            outputs = noise_outputs(race, batch.tokens, others)
            reference = outputs.pop("fp32 batch 256")
            for name, output in outputs.items():
                totals.setdefault(f"{name} -> fp32", []).append(compare(output, reference, batch, race))
            totals.setdefault("fp32 -> bf16", []).append(compare(reference, outputs["bf16"], batch, race))
    return [merge(name, parts) for name, parts in totals.items()]


def merge(setting: str, parts: list[Mismatch]) -> Mismatch:
    """The sum of several measurements of one setting."""
    return Mismatch(
        setting,
        sum(p.appropriate for p in parts),
        sum(p.failed for p in parts),
        max(p.max_abs_diff for p in parts),
    )
