"""How far honest executors stray from a validator's forward pass: the data behind the spot check's tolerances.

An honest executor generates with a KV cache, possibly in another dtype or with another thread count; the validator
re-scores teacher-forced in fp32. For every generated position this records the logprob error, the probability
mass by which the seeded draw missed the token's interval (0 when it lies inside) and, for greedy decoding, how far
the token's logit lies below the best. `python -m racenet.ml.calibrate_check` prints the table kept in
docs/verification.md; `--json` prints the raw maxima and quantiles.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from racenet.ml.backend import ChatMessage, GenerationRequest
from racenet.ml.check import DEFAULT_TOLERANCE, Answer, Sampling, answer_from_events, check_answer
from racenet.ml.sampling import nucleus_probs, token_interval, uniform
from racenet.ml.transformers_backend import TransformersBackend

PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a hash function is to a child.",
    "List three uses of copper.",
    "How do I reverse a list in Python?",
    "Give me a recipe for pancakes.",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish and German.",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "What are the health benefits of walking?",
    "Write a haiku about autumn leaves.",
    "What is 17 times 23?",
)
SETTINGS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (0.7, 0.9), (1.0, 1.0))
"""(temperature, top_p) pairs: greedy, a typical chat setting, plain sampling."""


@dataclass(frozen=True)
class Position:
    """One generated position as the validator sees it."""

    variant: str
    temperature: float
    logprob_error: float
    cdf_miss: float
    greedy_gap: float


@dataclass(frozen=True)
class Summary:
    """The worst and the 99.9th-percentile deviation of one variant, and how many of its answers the check failed."""

    variant: str
    answers: int
    positions: int
    max_logprob_error: float
    p999_logprob_error: float
    max_cdf_miss: float
    max_greedy_gap: float
    failed_checks: int


def variants(validator: TransformersBackend) -> Iterator[tuple[str, TransformersBackend, int]]:
    """Honest executors: fp32 on 1 and 2 threads, and the same weights in bf16 (each with its thread count)."""
    yield "fp32, 1 thread", validator, 1
    yield "fp32, 2 threads", validator, 2
    yield "bf16, 1 thread", validator.in_dtype(torch.bfloat16), 1


def honest_positions(
    validator: TransformersBackend, executor: TransformersBackend, variant: str, prompts: int, max_tokens: int
) -> tuple[list[Position], int, int]:
    """Generate with `executor` and re-score with `validator`: every position's deviations, answers, failed checks."""
    positions: list[Position] = []
    answers = failed = 0
    for index, text in enumerate(PROMPTS[:prompts]):
        messages: list[ChatMessage] = [{"role": "user", "content": text}]
        for temperature, top_p in SETTINGS:
            seed = 1000 * index + int(10 * temperature)
            request = GenerationRequest(
                validator.name, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed
            )
            answer = answer_from_events(list(executor.generate(request)))
            prompt = validator.tokenize_chat(messages)
            sampling = Sampling(temperature, top_p, seed, max_tokens)
            answers += 1
            failed += not check_answer(validator, prompt, sampling, answer).passed
            positions += _deviations(validator, prompt, sampling, answer, variant)
    return positions, answers, failed


def _deviations(
    validator: TransformersBackend, prompt: list[int], sampling: Sampling, answer: Answer, variant: str
) -> list[Position]:
    logits = validator.next_token_logits(prompt, answer.token_ids)
    logprobs = torch.log_softmax(logits, dim=-1)
    found = []
    for i, token in enumerate(answer.token_ids):
        cdf_miss = greedy_gap = 0.0
        if sampling.temperature == 0.0:
            greedy_gap = float(logits[i].max() - logits[i, token])
        else:
            interval = token_interval(nucleus_probs(logits[i], sampling.temperature, sampling.top_p), token)
            draw = uniform(sampling.seed, i) * interval.total
            cdf_miss = max(0.0, interval.low - draw, draw - interval.high)
        error = abs(float(logprobs[i, token]) - answer.logprobs[i])
        found.append(Position(variant, sampling.temperature, error, cdf_miss, greedy_gap))
    return found


def summarize(variant: str, positions: list[Position], answers: int, failed: int) -> Summary:
    """The table row of one variant."""
    errors = sorted(p.logprob_error for p in positions)
    return Summary(
        variant=variant,
        answers=answers,
        positions=len(positions),
        max_logprob_error=errors[-1],
        p999_logprob_error=errors[min(len(errors) - 1, int(0.999 * len(errors)))],
        max_cdf_miss=max(p.cdf_miss for p in positions),
        max_greedy_gap=max(p.greedy_gap for p in positions),
        failed_checks=failed,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the honest variants and print one row each (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many of the fixed prompts to use")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    validator = TransformersBackend.packaged(threads=1)
    rows = []
    for variant, executor, threads in variants(validator):
        torch.set_num_threads(threads)
        positions, answers, failed = honest_positions(validator, executor, variant, args.prompts, args.max_tokens)
        torch.set_num_threads(1)
        rows.append(summarize(variant, positions, answers, failed))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
        return
    tol = DEFAULT_TOLERANCE
    print(f"tolerances: logprob {tol.logprob} nats, cdf {tol.cdf}, greedy {tol.greedy} logit")
    print("| executor | answers | positions | max logprob error | 99.9% | max cdf miss | max greedy gap | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.variant} | {r.answers} | {r.positions} | {r.max_logprob_error:.2e} | {r.p999_logprob_error:.2e} "
            f"| {r.max_cdf_miss:.2e} | {r.max_greedy_gap:.2e} | {r.failed_checks} |"
        )


if __name__ == "__main__":
    main()
