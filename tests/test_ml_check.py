"""The spot check on the real SmolLM2: honest executors (fp32 and bf16) pass, every cheat the paper names fails.

Each cheat (`racenet.ml.cheats`) reports the strongest logprobs it can: where a re-scoring pass with the real model
makes them true, it does, so only the sampling replay and the ending can catch it — these tests fail if either
defence is removed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from racenet.ml import cheats
from racenet.ml.backend import ChatMessage, FinishEvent, GenerationRequest
from racenet.ml.check import Answer, Sampling, answer_from_events, check_answer
from racenet.ml.sampling import pick, request_sampling_seed, uniform
from racenet.ml.transformers_backend import TransformersBackend

QUESTION: list[ChatMessage] = [{"role": "user", "content": "Explain what a hash function is to a child."}]
SETTINGS = [pytest.param(0.0, 1.0, id="greedy"), pytest.param(0.7, 0.9, id="t0.7-top0.9")]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as the executor's compute thread runs (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def validator() -> TransformersBackend:
    return TransformersBackend.packaged(threads=1)


@pytest.fixture(scope="module")
def prompt(validator: TransformersBackend) -> list[int]:
    return validator.tokenize_chat(QUESTION)


def sampling(temperature: float, top_p: float, max_tokens: int = 40) -> Sampling:
    return Sampling(temperature, top_p, request_sampling_seed(b"\x07" * 32, None), max_tokens)


def test_the_sampler_is_a_function_of_logits_and_the_public_seed() -> None:
    logits = torch.randn(500, generator=torch.Generator().manual_seed(1))
    seed = request_sampling_seed(b"\x01" * 32, 42)
    draws = [pick(logits, 0.8, 0.9, uniform(seed, i)) for i in range(50)]
    assert draws == [pick(logits, 0.8, 0.9, uniform(seed, i)) for i in range(50)]
    assert len(set(draws)) > 3
    assert pick(logits, 0.0, 1.0, 0.5) == int(torch.argmax(logits))
    assert request_sampling_seed(b"\x01" * 32, 42) != request_sampling_seed(b"\x02" * 32, 42)
    assert request_sampling_seed(b"\x01" * 32, 42) != request_sampling_seed(b"\x01" * 32, None)
    assert all(0.0 <= uniform(seed, i) < 1.0 for i in range(100))


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
def test_honest_fp32_and_bf16_executors_pass(
    validator: TransformersBackend, prompt: list[int], temperature: float, top_p: float
) -> None:
    s = sampling(temperature, top_p)
    for executor in (validator, validator.in_dtype(torch.bfloat16)):
        result = check_answer(validator, prompt, s, cheats.generate(executor, QUESTION, s))
        assert result.passed, result


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
@pytest.mark.parametrize("kind", cheats.CHEATS)
def test_every_cheat_fails(
    validator: TransformersBackend, prompt: list[int], kind: cheats.Cheat, temperature: float, top_p: float
) -> None:
    s = sampling(temperature, top_p)
    result = check_answer(validator, prompt, s, cheats.cheater(kind, validator)(QUESTION, s))
    assert not result.passed, result
    if kind in ("prefill", "advertisement", "random_tokens"):
        assert result.logprob_misses == 0  # its logprobs are true: only the sampling replay or the ending tells
        assert result.failure in ("sampling", "ending")


def test_a_cheating_backend_serves_every_cheat_in_turn_and_each_answer_fails(
    validator: TransformersBackend, prompt: list[int]
) -> None:
    backend = cheats.CheatingBackend(validator)
    for n, kind in enumerate(cheats.CHEATS):
        s = Sampling(0.7, 0.9, request_sampling_seed(bytes([n]) * 32, None), 24)
        request = GenerationRequest(validator.name, QUESTION, max_tokens=24, temperature=0.7, top_p=0.9, seed=s.seed)
        events = list(backend.generate(request))
        assert backend.served[s.seed] == kind
        finish = events[-1]
        assert isinstance(finish, FinishEvent) and finish.usage.prompt_tokens == len(prompt)
        result = check_answer(validator, prompt, s, answer_from_events(events))
        assert not result.passed, (kind, result)


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
def test_a_cut_answer_fails_on_its_ending(
    validator: TransformersBackend, prompt: list[int], temperature: float, top_p: float
) -> None:
    s = sampling(temperature, top_p)
    honest = cheats.generate(validator, QUESTION, s)
    cut = honest.token_ids[: len(honest.token_ids) // 2]
    for finish in ("stop", "length"):
        assert check_answer(validator, prompt, s, cheats.rescored(validator, prompt, cut, finish)).failure == "ending"


def test_text_that_is_not_what_the_tokens_say_fails(validator: TransformersBackend, prompt: list[int]) -> None:
    s = sampling(0.0, 1.0)
    honest = cheats.generate(validator, QUESTION, s)
    assert check_answer(validator, prompt, s, honest).passed
    swapped = Answer(honest.token_ids, honest.logprobs, honest.finish_reason, honest.text + cheats.ADVERTISEMENT)
    assert check_answer(validator, prompt, s, swapped).failure == "text"


def test_false_logprobs_fail(validator: TransformersBackend, prompt: list[int]) -> None:
    s = sampling(0.0, 1.0)
    honest = cheats.generate(validator, QUESTION, s)
    inflated = Answer(honest.token_ids, tuple(0.0 for _ in honest.logprobs), honest.finish_reason, honest.text)
    result = check_answer(validator, prompt, s, inflated)
    assert result.failure == "logprobs"
    assert result.sample_misses == 0


def test_malformed_answers_fail_without_running_the_model(validator: TransformersBackend, prompt: list[int]) -> None:
    s = sampling(0.0, 1.0)
    assert check_answer(validator, prompt, s, Answer((1, 2), (0.0,), "stop", "")).failure == "malformed"
    huge = Answer((validator.vocab_size,), (0.0,), "stop", "")
    assert check_answer(validator, prompt, s, huge).failure == "malformed"
    too_long = Answer(tuple([1] * (s.max_tokens + 1)), tuple([0.0] * (s.max_tokens + 1)), "length", "")
    assert check_answer(validator, prompt, s, too_long).failure == "ending"
