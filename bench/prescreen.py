"""Pre-screening: what the best cheap predictors of the Race output gain over honest mining (security review H4).

A pre-screening miner runs a cheap predictor on every nonce and the full model only on the nonces the
predictor ranks best. For each preset and predictor this bench measures

    gain = (fraction of the appropriate vectors it still finds) / (predictor cost + fraction run in full)

with costs in units of one full forward pass per nonce, both timed here at the preset's batch size; hashing is
left out on both sides, which favours the attacker. Honest mining has gain 1. The best gain over the ranked
fractions (2% to 50%) and three rankings, chosen on half of the test pairs and measured on the other half, is
reported per predictor with its standard error:

- `table`: the additive per-token table of H4, mean output per (position, token) fitted on training nonces;
- `half`: the first half of the layers and the final LayerNorm (cost about one half);
- `no-attention`: every layer without its attention, so each token is on its own (cost about 1 / seq_len).

Rankings: by predicted distance (the prediction's own key picks the target); by the predicted probability of
being appropriate: P(all key signs right), from the prediction's per-value error on the training nonces, times
P(distance below the threshold); and by flatness (low sum of fourth powers of the unit output), the one trait
that changes the odds against a random target (measured: the flattest 2% of true outputs pass about 5% more
often). Test samples are pairs (output i of a held-out nonce, permutation and
mix of a probe nonce j), each a sample of the task (calibrate.py's cross pairs; probes need hashing only),
scored against the preset's threshold.
`without key` repeats the measurement with the target picked by the mix alone, as when the target was known
before the forward pass: the predictors are strong, the output key is what takes their gain away.

    python bench/prescreen.py [--quick]        (about 20 minutes on 2 cores; --quick about 5)

Ends with: RESULT max_prescreen_gain=<x> (goal <= 1.10), and the best gain per preset.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from racenet.pow.calibrate import CROSS_ROWS
from racenet.pow.model import Block, RaceTransformer
from racenet.pow.presets import PRESETS, Preset
from racenet.pow.race import Race, build_race
from racenet.pow.vectors import NonceBatch, node_seed, output_keys, target_indices

THREADS = 2
SEED = bytes(range(100, 132))
NODE = node_seed(b"racenet-prescreen")
FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5)
SIZES = {"tiny": (200_000, 1024, 8_192), "small": (16_384, 512, 8_192), "paper": (1_536, 512, 8_192)}
QUICK_SIZES = {"tiny": (50_000, 256, 4_096), "small": (4_096, 256, 4_096), "paper": (512, 256, 2_048)}
"""(training nonces, held-out outputs, probe nonces) per preset: the test pairs are held-out outputs x probes."""

RANKINGS = ("distance", "likelihood", "flatness")
Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Measured:
    """One predictor's best gain on one preset, with and without the output key."""

    preset: str
    predictor: str
    cost: float
    gain: float
    fraction: float
    ranking: str
    gain_without_key: float


def per_nonce_seconds(fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor) -> float:
    """Best seconds per nonce of `fn` on a batch of tokens (after a warm-up call)."""
    with torch.inference_mode():
        fn(tokens)
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            fn(tokens)
            best = min(best, time.perf_counter() - start)
    return best / len(tokens)


def outputs(race: Race, batch: NonceBatch, batch_size: int) -> torch.Tensor:
    """The full model's outputs of every nonce in `batch`."""
    parts = [race.outputs(batch.tokens[i : i + batch_size]) for i in range(0, len(batch.nonces), batch_size)]
    return torch.cat(parts).double()


def table_predictor(race: Race, tokens: torch.Tensor, actual: torch.Tensor) -> Predictor:
    """H4's surrogate: the mean output over the training nonces, plus the mean deviation of each (position, token);
    evaluated in fp32 as one gather and sum, as an attacker would."""
    preset = race.preset
    mean = actual.mean(0)
    rows = tokens + torch.arange(preset.seq_len) * preset.vocab_size
    counts = torch.zeros(preset.seq_len * preset.vocab_size, dtype=torch.float64)
    counts.index_add_(0, rows.reshape(-1), torch.ones(rows.numel(), dtype=torch.float64))
    sums = torch.zeros(preset.seq_len * preset.vocab_size, preset.d_model, dtype=torch.float64)
    sums.index_add_(0, rows.reshape(-1), (actual - mean).repeat_interleave(preset.seq_len, dim=0))
    table = (sums / counts.clamp(min=1).unsqueeze(1)).float()
    offsets = torch.arange(preset.seq_len) * preset.vocab_size
    base = mean.float()
    return lambda t: base + table[t + offsets].sum(1)


def half_depth(model: RaceTransformer) -> Predictor:
    """The first half of the blocks and the final LayerNorm."""
    blocks = model.blocks[: max(1, len(model.blocks) // 2)]

    def run(tokens: torch.Tensor) -> torch.Tensor:
        x = model.tok(tokens) + model.pos
        for block in blocks:
            x = block(x)
        out: torch.Tensor = model.ln_f(x[:, -1, :])
        return out

    return run


def without_attention(model: RaceTransformer) -> Predictor:
    """Every block's feed-forward half on the last token alone (no token sees another)."""

    def run(tokens: torch.Tensor) -> torch.Tensor:
        x = model.tok(tokens[:, -1]) + model.pos[-1]
        for block in model.blocks:
            assert isinstance(block, Block)
            x = x + block.ffn(block.ln2(x))
        out: torch.Tensor = model.ln_f(x)
        return out

    return run


def pair_distances(out: torch.Tensor, batch: NonceBatch, targets: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Distance of each (output i, nonce j's permutation and mix) pair, the target picked by key i and mix j."""
    unit = out / out.norm(dim=1, keepdim=True)
    rows = []
    for start in range(0, len(unit), CROSS_ROWS):
        chunk = unit[start : start + CROSS_ROWS]
        index = torch.arange(len(chunk)).view(-1, 1, 1)
        permuted = chunk[index, batch.permutations.unsqueeze(0)]
        picked = targets[target_indices(keys[start : start + CROSS_ROWS].unsqueeze(1), batch.mix.unsqueeze(0))]
        rows.append(torch.linalg.vector_norm(permuted - picked, dim=2))
    return torch.cat(rows).reshape(-1)


def head(batch: NonceBatch, n: int) -> NonceBatch:
    """The first n nonces of a batch."""
    return NonceBatch(batch.nonces[:n], batch.tokens[:n], batch.permutations[:n], batch.mix[:n])


def ranked_gain(appropriate: torch.Tensor, score: torch.Tensor, cost: float, fraction: float) -> tuple[float, int]:
    """(gain, vectors found) of running the full pass on the top `fraction` by `score`."""
    top = torch.topk(score, max(1, int(fraction * len(score)))).indices
    found = int(appropriate[top].sum())
    return (found / max(1, int(appropriate.sum()))) / (cost + fraction), found


def best_gain(
    appropriate: torch.Tensor, scores: list[torch.Tensor], cost: float, rows: int
) -> tuple[float, float, int, float]:
    """(gain, fraction, ranking, standard error) of the best ranked fraction, chosen on the pairs of even output rows
    and measured on those of odd rows, so that picking the best of many does not inflate the figure."""
    row = torch.arange(len(appropriate)) // (len(appropriate) // rows)
    choose, report = row % 2 == 0, row % 2 == 1
    candidates = [
        (ranked_gain(appropriate[choose], score[choose], cost, fraction)[0], fraction, r)
        for r, score in enumerate(scores)
        for fraction in FRACTIONS
    ]
    _, fraction, r = max(candidates)
    gain, found = ranked_gain(appropriate[report], scores[r][report], cost, fraction)
    return gain, fraction, r, gain / math.sqrt(max(found, 1))


def measure(preset: Preset, train: int, test: int, probes: int) -> list[Measured]:
    """Fit every predictor on `train` nonces and score it on pairs of `test` held-out outputs x `probes` nonces'
    permutations and mixes (hashes only: their forward passes are never needed)."""
    race = build_race(preset, SEED)
    started = time.perf_counter()
    train_batch = race.prepare(NODE, range(train))
    test_batch = race.prepare(NODE, range(train, train + test))
    probe = race.prepare(NODE, range(1 << 40, (1 << 40) + probes))
    train_out = outputs(race, train_batch, preset.batch_size)
    test_out = outputs(race, test_batch, preset.batch_size)
    print(f"{preset.name}: {train:,} training and {test:,} held-out nonces in {time.perf_counter() - started:.0f} s")
    timing_tokens = test_batch.tokens[: preset.batch_size]
    full_seconds = per_nonce_seconds(race.outputs, timing_tokens)
    bits = preset.key_bits
    actual_keys = output_keys(test_out, bits)
    appropriate = pair_distances(test_out, probe, race.targets, actual_keys) < race.threshold
    no_key = torch.zeros_like(actual_keys)
    appropriate_no_key = pair_distances(test_out, probe, race.targets, no_key) < race.threshold
    found = int(appropriate.sum())
    print(f"  {found} appropriate of {len(appropriate):,} pairs; full pass {full_seconds * 1e6:.1f} µs/nonce")
    predictors: dict[str, Predictor] = {
        "table": table_predictor(race, train_batch.tokens, train_out),
        "half": half_depth(race.model),
        "no-attention": without_attention(race.model),
    }
    fit, fit_rows = head(probe, 1024), min(train, 256)
    results = []
    for name, predictor in predictors.items():
        with torch.inference_mode():
            train_pred = predictor(train_batch.tokens).double()
            test_pred = predictor(test_batch.tokens).double()
        cost = per_nonce_seconds(predictor, timing_tokens) / full_seconds
        spread = (train_out - train_pred).std(0).clamp(min=1e-9)
        sign_right = torch.special.log_ndtr(test_pred[:, :bits].abs() / spread[:bits]).sum(1)
        predicted = pair_distances(test_pred, probe, race.targets, output_keys(test_pred, bits))
        true_keys = output_keys(train_out[:fit_rows], bits)
        error = pair_distances(train_pred[:fit_rows], fit, race.targets, true_keys)
        error -= pair_distances(train_out[:fit_rows], fit, race.targets, true_keys)
        below = torch.special.log_ndtr((race.threshold - predicted) / float(error.std()))
        likely = sign_right.repeat_interleave(probes) + below
        unit = test_pred / test_pred.norm(dim=1, keepdim=True)
        flat = (-(unit**4).sum(1)).repeat_interleave(probes)
        gain, fraction, ranking, spread_of_gain = best_gain(appropriate, [-predicted, likely, flat], cost, test)
        predicted_no_key = pair_distances(test_pred, probe, race.targets, no_key)
        gain_no_key, _, _, _ = best_gain(appropriate_no_key, [-predicted_no_key], cost, test)
        key_right = float((output_keys(test_pred, bits) == actual_keys).all(1).double().mean())
        measured = Measured(preset.name, name, cost, gain, fraction, RANKINGS[ranking], gain_no_key)
        print(
            f"  {name:13s} cost {cost:.3f}  key right {key_right:.4f}  gain {gain:.3f} ± {spread_of_gain:.3f} "
            f"(top {fraction:.0%} by {measured.ranking})  without key {gain_no_key:.2f}"
        )
        results.append(measured)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer nonces (about five minutes; noisier)")
    parser.add_argument("--presets", default="tiny,small,paper", help="comma-separated presets")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    sizes = QUICK_SIZES if args.quick else SIZES
    results = [r for name in args.presets.split(",") for r in measure(PRESETS[name], *sizes[name])]
    per_preset = {p: max(r.gain for r in results if r.preset == p) for p in dict.fromkeys(r.preset for r in results)}
    worst = max(results, key=lambda r: r.gain)
    print(f"best predictor: {worst.predictor} on {worst.preset}, gain {worst.gain:.3f} (goal <= 1.10)")
    extra = " ".join(f"gain_{p}={g:.3f}" for p, g in per_preset.items())
    print(f"RESULT max_prescreen_gain={worst.gain:.3f} {extra}")


if __name__ == "__main__":
    main()
