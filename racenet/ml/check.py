"""The spot check of one answer: re-score the executor's tokens in one teacher-forced pass and replay its sampler.

An executor claims: for this prompt and these sampling parameters, the model produced these tokens with these
log-probabilities, and stopped for this reason. The validator runs the claimed model once over prompt + tokens
(`TransformersBackend.next_token_logits`, much cheaper than generating) and asks of every position:

- **logprob**: does the reported log-probability match its own within `Tolerance.logprob` nats?
- **sample**: is the token the one the replayable sampler (`racenet.ml.sampling`) had to pick with this
  position's public uniform draw, up to `Tolerance.cdf` of probability mass (greedy: up to `Tolerance.greedy` of
  logit below the best)? This is what catches a cheap model writing while the real one scores (pre-fill), injected
  text and random tokens: their reported logprobs can be true, but their tokens are not the seeded draws.
- **ending**: the answer ends where the model would: at an end-of-sequence draw, at the stop string, or at the
  token budget, and its text is exactly what the tokens decode to. A wrong ending or text fails the check outright,
  so an empty or truncated answer is never a pass.

Honest numeric noise (another dtype, thread count, or a KV-cached generation vs one teacher-forced pass) moves a
token's logprob and its interval's edges a little; the tolerances and `HONEST_MISS_RATE` were measured on honest
runs (`python -m racenet.ml.calibrate_check`, table in docs/verification.md), and the misses an answer may have
are the largest count an honest one reaches with probability at least `ALPHA` (binomial, as the Race verifier).

Repeated small deviations — one altered token in a few dozen — stay inside each answer's allowance, so the
misses of an executor's answers in one cycle are also judged together (`cycle_failed`): the same binomial bound
over all their positions, at `CYCLE_ALPHA`, since a checker tests its running total after every answer it adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from racenet.ml.backend import FinishEvent, FinishReason, GenerationEvent, TokenEvent
from racenet.ml.sampling import nucleus_probs, uniform
from racenet.ml.text import TextAssembler
from racenet.ml.transformers_backend import TransformersBackend
from racenet.pow.decision import max_mismatches

ALPHA = 1e-4
"""Target false-positive rate of one check on an honest answer."""
HONEST_MISS_RATE = 2e-3
"""Upper bound on the per-position rate of logprob or sample misses of an honest executor (see docs/verification.md)."""

CYCLE_ALPHA = 1e-6
"""False-positive rate of one look at an executor's running total of misses in a cycle: a checker looks once per
answer it adds, so up to 100 looks keep an honest executor's chance of being flagged in a cycle below `ALPHA`."""

Failure = Literal["", "ending", "text", "sampling", "logprobs", "malformed"]


@dataclass(frozen=True)
class Tolerance:
    """How far an honest answer may stray from the validator's own forward pass at one position."""

    logprob: float = 0.5
    cdf: float = 0.1
    greedy: float = 0.5


DEFAULT_TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Sampling:
    """The sampling parameters of the request (from its body) and the seed the chain data gives it."""

    temperature: float
    top_p: float
    seed: int
    max_tokens: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """What an executor reported: the completion's token ids, their logprobs, the finish reason and the text."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    text: str


@dataclass(frozen=True)
class CheckResult:
    """One check's findings: positions looked at, misses of each kind, and the failure that decides it ("" = pass)."""

    positions: int
    logprob_misses: int
    sample_misses: int
    allowed_misses: int
    max_logprob_error: float
    failure: Failure
    detail: str = field(default="", compare=False)

    @property
    def passed(self) -> bool:
        """Whether the answer is what the claimed model, sampled with the request's seed, would have produced."""
        return self.failure == ""


def answer_from_events(events: Sequence[GenerationEvent]) -> Answer:
    """The answer a generation's events report (token ids, logprobs, finish reason, text), as a check reads it."""
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    finish = events[-1]
    if not isinstance(finish, FinishEvent) or any(t.token_id is None for t in tokens):
        raise ValueError("a checkable answer ends with its finish event and names every token id")
    ids = tuple(t.token_id for t in tokens if t.token_id is not None)
    return Answer(ids, tuple(t.logprob for t in tokens), finish.finish_reason, "".join(e.text for e in events))


def check_answer(
    backend: TransformersBackend,
    prompt_token_ids: Sequence[int],
    sampling: Sampling,
    answer: Answer,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> CheckResult:
    """Check an executor's answer against one teacher-forced pass of the validator's model."""
    tokens = list(answer.token_ids)
    if len(answer.logprobs) != len(tokens) or any(not 0 <= t < backend.vocab_size for t in tokens):
        return _failed(len(tokens), "malformed", "token ids and logprobs do not line up with the model's vocabulary")
    budget = min(sampling.max_tokens, backend.context_length - len(prompt_token_ids))
    if len(tokens) > budget:
        return _failed(len(tokens), "ending", f"{len(tokens)} tokens exceed the budget of {budget}")
    ending = _text_ending(backend, tokens, sampling.stop, answer)
    if ending:
        return _failed(len(tokens), "text", ending)
    logits = backend.next_token_logits(prompt_token_ids, tokens)
    recomputed = torch.log_softmax(logits[: len(tokens)], dim=-1)
    errors = [abs(float(recomputed[i, t]) - answer.logprobs[i]) for i, t in enumerate(tokens)]
    logprob_misses = sum(e > tolerance.logprob for e in errors)
    position = len(tokens)
    candidates = [(t,) for t in tokens] + [tuple(sorted(backend.eos_token_ids))]
    draws = [uniform(sampling.seed, i) for i in range(position + 1)]
    drawn = _drawn(logits, candidates, sampling, draws, tolerance)
    sample_misses = position - sum(drawn[:position])
    ended = drawn[position]
    allowed = max_mismatches(position, HONEST_MISS_RATE, ALPHA)
    stopped_by_string = answer.finish_reason == "stop" and _stops_at_last(backend, tokens, sampling.stop)
    failure: Failure = ""
    detail = ""
    if answer.finish_reason == "length" and position != budget:
        failure, detail = "ending", f"a length finish after {position} of {budget} tokens"
    elif answer.finish_reason == "stop" and not stopped_by_string and not ended:
        failure, detail = "ending", f"the model would not have ended at position {position}"
    elif sample_misses > allowed:
        failure = "sampling"
    elif logprob_misses > allowed:
        failure = "logprobs"
    return CheckResult(position, logprob_misses, sample_misses, allowed, max(errors, default=0.0), failure, detail)


def cycle_failed(results: Sequence[CheckResult]) -> bool:
    """Whether answers of one executor in one cycle, each passing alone, together miss more positions than honest
    noise allows: the whitepaper's error-rate threshold over a cycle instead of a verdict on a single miss."""
    positions = sum(r.positions for r in results)
    allowed = max_mismatches(positions, HONEST_MISS_RATE, CYCLE_ALPHA)
    return max(sum(r.sample_misses for r in results), sum(r.logprob_misses for r in results)) > allowed


def _failed(positions: int, failure: Failure, detail: str) -> CheckResult:
    return CheckResult(positions, 0, 0, 0, 0.0, failure, detail)


def _drawn(
    logits: torch.Tensor,
    candidates: Sequence[tuple[int, ...]],
    sampling: Sampling,
    draws: Sequence[float],
    tolerance: Tolerance,
) -> list[bool]:
    """Per position (a row of logits): could the seeded sampler have drawn one of its candidates, up to tolerance?

    A sampled position is tried with the request's top-p, and again with the nucleus widened by `Tolerance.cdf`
    (a token at the nucleus edge may be in on one machine and out on another).
    """
    if sampling.temperature == 0.0:
        best = logits.max(dim=-1).values
        return [float(logits[i, list(c)].max()) >= float(best[i]) - tolerance.greedy for i, c in enumerate(candidates)]
    found = [False] * len(candidates)
    for top_p in dict.fromkeys((sampling.top_p, min(1.0, sampling.top_p + tolerance.cdf))):
        rows = [i for i, ok in enumerate(found) if not ok]
        if not rows:
            break
        probs = nucleus_probs(logits[rows], sampling.temperature, top_p)
        cumulative = torch.cumsum(probs, dim=-1)
        for r, i in enumerate(rows):
            draw = draws[i] * float(cumulative[r, -1])
            for token in candidates[i]:
                mass, high = float(probs[r, token]), float(cumulative[r, token])
                if mass > 0.0 and high - mass - tolerance.cdf <= draw <= high + tolerance.cdf:
                    found[i] = True
                    break
    return found


def _text_ending(backend: TransformersBackend, tokens: list[int], stop: tuple[str, ...], answer: Answer) -> str:
    """Why the answer's text or stop does not follow from its tokens ("" if it does)."""
    assembler = TextAssembler(backend.decode, stop)
    parts = []
    for i, token in enumerate(tokens):
        parts.append(assembler.add(token))
        if assembler.stopped and i != len(tokens) - 1:
            return f"a stop string ended the text at token {i}, yet the answer goes on"
    if assembler.stopped and answer.finish_reason != "stop":
        return "the text reached a stop string but the answer claims another finish"
    parts.append(assembler.flush())
    if "".join(parts) != answer.text:
        return "the answer's text is not what its tokens decode to"
    return ""


def _stops_at_last(backend: TransformersBackend, tokens: list[int], stop: tuple[str, ...]) -> bool:
    """Whether a stop string (not an end-of-sequence draw) ended the answer at its last token."""
    if not stop or not tokens:
        return False
    assembler = TextAssembler(backend.decode, stop)
    for token in tokens:
        assembler.add(token)
    return assembler.stopped
