"""Repeated small deviations (whitepaper §6): answers that each pass their own check fail together over a cycle.

An executor that alters one token in a dozen stays inside every answer's miss allowance; the checker adds up the
misses of an executor's answers in a cycle (`cycle_failed`) and fails the check that tips the total, and a
re-verifier of a task whose answer passes alone looks at the executor's other answers of that cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from racenet.chain.modules.verification import MsgCheck, MsgReverify, OpenTask, Task, TaskStatus
from racenet.chain.scalars import Address, Amount
from racenet.ml import cheats
from racenet.ml.backend import ChatMessage
from racenet.ml.check import DEFAULT_TOLERANCE, Answer, CheckResult, Sampling, check_answer, cycle_failed
from racenet.ml.sampling import request_sampling_seed
from racenet.ml.transformers_backend import TransformersBackend
from racenet.node.checker import CYCLE_SAMPLE, Checker
from tests.chain import key

MAX_TOKENS = 16
ANSWERS = 12
QUESTIONS = [
    "Explain what a hash function is to a child.",
    "Describe how a bicycle works.",
    "Write a short story about a lighthouse keeper.",
    "Explain why the sky is blue.",
    "Describe the water cycle in detail.",
    "Explain how a computer stores numbers.",
    "Tell me about the history of bread.",
    "Describe a walk through a forest in autumn.",
    "Explain what photosynthesis is.",
    "Describe how trains run on rails.",
    "Explain how vaccines train the immune system.",
    "Describe the rules of chess for a beginner.",
    "Explain what an atom is made of.",
    "Tell me how to plant a tomato seed.",
    "Describe the life of a honeybee.",
    "Explain how a rainbow forms.",
    "Describe how a river reaches the sea.",
    "Explain what gravity does.",
]


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersBackend]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TransformersBackend.packaged(threads=1)
    torch.set_num_threads(threads)


def nudged(model: TransformersBackend, prompt: list[int], honest: Answer) -> Answer | None:
    """The honest greedy answer with its last token swapped for the model's runner-up (a real deviation: its
    logit is more than the greedy tolerance below the best), re-scored by the real model; None on a near tie."""
    tokens = list(honest.token_ids)
    row = model.next_token_logits(prompt, tokens[:-1])[-1]
    best, runner_up = torch.topk(row, 2)
    if float(best[0] - best[1]) <= DEFAULT_TOLERANCE.greedy:
        return None
    return cheats.rescored(model, prompt, [*tokens[:-1], int(runner_up[1])], "length")


@pytest.fixture(scope="module")
def answers(model: TransformersBackend) -> list[tuple[CheckResult, CheckResult]]:
    """(honest, nudged) check results for ANSWERS greedy answers cut by the token budget."""
    found = []
    for n, question in enumerate(QUESTIONS):
        messages: list[ChatMessage] = [{"role": "user", "content": question}]
        sampling = Sampling(0.0, 1.0, request_sampling_seed(bytes([n]) * 32, None), MAX_TOKENS)
        prompt = model.tokenize_chat(messages)
        honest = cheats.generate(model, messages, sampling)
        cheat = nudged(model, prompt, honest) if honest.finish_reason == "length" else None
        if cheat is not None:
            found.append((check_answer(model, prompt, sampling, honest), check_answer(model, prompt, sampling, cheat)))
        if len(found) == ANSWERS:
            return found
    raise AssertionError(f"only {len(found)} of {len(QUESTIONS)} questions gave a long answer without a near tie")


def test_small_deviations_pass_alone_and_fail_over_the_cycle(answers: list[tuple[CheckResult, CheckResult]]) -> None:
    honest = [h for h, _ in answers]
    cheat = [c for _, c in answers]
    assert all(h.passed and h.sample_misses == 0 for h in honest)
    assert all(c.passed and c.sample_misses == 1 for c in cheat)
    assert not cycle_failed(honest)
    assert cycle_failed(cheat)
    assert not cycle_failed(cheat[:3])  # a few misses are honest noise, not a verdict


def result(misses: int, positions: int = MAX_TOKENS) -> CheckResult:
    return CheckResult(positions, 0, misses, 2, 0.0, "")


def test_the_bound_grows_with_positions_and_counts_either_kind_of_miss() -> None:
    assert not cycle_failed([])
    assert not cycle_failed([result(1)] * 4)
    assert cycle_failed([result(1)] * 40)
    assert not cycle_failed([result(0, 48)] * 1000)
    logprob_misses = CheckResult(MAX_TOKENS, 1, 0, 2, 0.6, "")
    assert cycle_failed([logprob_misses] * 40)


class Recorder:
    """The checker's sender: keeps what it would broadcast."""

    def __init__(self) -> None:
        self.key = key(9)
        self.chain_id = "test"
        self.sent: list[Any] = []

    def send(self, msgs: list[Any]) -> None:
        self.sent.extend(msgs)


class Tasks:
    """The chain client's answer to verification/tasks: a fixed list."""

    def __init__(self, tasks: list[OpenTask]) -> None:
        self.tasks = tasks

    def query(self, *_: Any) -> Any:
        return self


EXECUTOR = Address(b"\x05" * 20)


def open_task(n: int, status: TaskStatus = TaskStatus.OPEN) -> OpenTask:
    task = Task(EXECUTOR, Address(b"\x06" * 20), 3, 10, 11, 1_000_000, Amount(100), status)
    return OpenTask(bytes([n]) * 32, task, 1, 2)


def checker_with(tasks: list[OpenTask], misses: int) -> tuple[Checker, Recorder]:
    """A checker whose every answer passes alone with `misses` sample misses."""
    sender = Recorder()
    checker = Checker(Tasks(tasks), sender, None, 1, None)  # type: ignore[arg-type]

    def verdict(task: OpenTask) -> bool:
        checker.results[task.request_id] = result(misses)
        checker._cycle_results(task)[task.request_id] = result(misses)
        return True

    checker.verdict = verdict  # type: ignore[method-assign,assignment]
    return checker, sender


def test_the_checker_fails_the_check_that_tips_the_cycle_over_the_bound() -> None:
    tasks = [open_task(n) for n in range(1, 41)]
    checker, sender = checker_with(tasks, misses=1)
    for task in tasks:
        checker._check(task, b"\x00" * 96)
    verdicts = [m.passed for m in sender.sent if isinstance(m, MsgCheck)]
    assert verdicts[0] and not verdicts[-1]
    first_fail = verdicts.index(False)
    assert not cycle_failed([result(1)] * first_fail) and cycle_failed([result(1)] * (first_fail + 1))
    assert not any(verdicts[first_fail:])


def test_a_re_verifier_judges_a_passing_answer_with_the_executors_other_answers_of_the_cycle() -> None:
    disputed = open_task(1, TaskStatus.DISPUTED)
    others = [open_task(n) for n in range(2, 2 + CYCLE_SAMPLE + 4)]
    deviating, sender = checker_with([disputed, *others], misses=1)
    deviating._reverify(disputed)
    honest, honest_sender = checker_with([disputed, *others], misses=0)
    honest._reverify(disputed)
    assert [m.valid for m in sender.sent if isinstance(m, MsgReverify)] == [False]
    assert [m.valid for m in honest_sender.sent if isinstance(m, MsgReverify)] == [True]
    assert len(deviating.results) == 1 + CYCLE_SAMPLE  # the disputed answer and at most CYCLE_SAMPLE others
