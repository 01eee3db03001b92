"""Repeated small deviations (whitepaper §6): answers that each pass their own check fail together over a cycle.

An executor that alters one token in a dozen stays inside every answer's miss allowance; the checker adds up the
misses of an executor's answers in a cycle (`cycle_failed`) and fails the check that tips the total, naming those
answers as evidence; a re-verifier of a task whose answer passes alone judges it with exactly that evidence, so
honest re-verifiers agree whatever else each has checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from racenet.chain.modules import verification
from racenet.chain.modules.verification import MsgCheck, MsgReverify, OpenTask, Task, TaskStatus
from racenet.chain.scalars import Address, Amount
from racenet.ml import cheats
from racenet.ml.backend import ChatMessage
from racenet.ml.check import DEFAULT_TOLERANCE, Answer, CheckResult, Sampling, check_answer, cycle_failed
from racenet.ml.sampling import request_sampling_seed
from racenet.ml.transformers_backend import TransformersBackend
from racenet.node.checker import Checker, Unavailable
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
    """The chain client's answers to verification/params, /tasks and /task, from a fixed list, at height 0."""

    check_blocks = 20

    def __init__(self, tasks: list[OpenTask]) -> None:
        self.tasks = tasks
        self.at = 0

    def height(self) -> int:
        return self.at

    def query(self, spec: Any, arg: Any = None) -> Any:
        if spec is verification.TASK:
            return next((t.task for t in self.tasks if t.request_id == arg), None)
        return self


EXECUTOR = Address(b"\x05" * 20)


DEADLINE = 30


def open_task(n: int, status: TaskStatus = TaskStatus.OPEN, evidence: tuple[bytes, ...] = ()) -> OpenTask:
    task = Task(
        EXECUTOR,
        Address(b"\x06" * 20),
        3,
        10,
        11,
        1_000_000,
        Amount(100),
        status,
        dispute_deadline=DEADLINE,
        evidence=evidence,
    )
    return OpenTask(bytes([n]) * 32, task, 1, 2)


def checker_with(
    tasks: list[OpenTask], misses: int | dict[bytes, int], unavailable: set[bytes] | None = None
) -> tuple[Checker, Recorder]:
    """A checker whose every answer passes alone with `misses` sample misses (per request id if a dict; an id
    missing from the dict is refused by the executor; one in `unavailable` cannot be fetched at its first try)."""
    sender = Recorder()
    checker = Checker(Tasks(tasks), sender, None, 1, None)  # type: ignore[arg-type]
    once = set(unavailable or ())

    def verdict(task: OpenTask) -> bool:
        if task.request_id in once:
            once.remove(task.request_id)
            raise Unavailable("the executor timed out", ours=False)
        found = misses if isinstance(misses, int) else misses.get(task.request_id)
        if found is None:
            checker.results[task.request_id] = "no checkable answer"
            return False
        checker.results[task.request_id] = result(found)
        checker._cycle_results(task.task)[task.request_id] = result(found)
        return True

    checker.verdict = verdict  # type: ignore[method-assign,assignment]
    return checker, sender


def test_the_checker_fails_the_check_that_tips_the_cycle_over_the_bound_and_names_its_evidence() -> None:
    tasks = [open_task(n) for n in range(1, 41)]
    checker, sender = checker_with(tasks, misses=1)
    for task in tasks:
        checker._check(task, b"\x00" * 96, 0, DEADLINE)
    checks = [m for m in sender.sent if isinstance(m, MsgCheck)]
    verdicts = [m.passed for m in checks]
    assert verdicts[0] and not verdicts[-1]
    first_fail = verdicts.index(False)
    assert not cycle_failed([result(1)] * first_fail) and cycle_failed([result(1)] * (first_fail + 1))
    assert not any(verdicts[first_fail:])
    assert all(not m.evidence for m in checks[:first_fail])
    evidence = checks[first_fail].evidence
    assert len(evidence) == first_fail and set(evidence) == {t.request_id for t in tasks[:first_fail]}
    assert cycle_failed([result(1)] * (len(evidence) + 1))


def verdicts_of(sender: Recorder) -> list[bool]:
    return [m.valid for m in sender.sent if isinstance(m, MsgReverify)]


def test_honest_re_verifiers_agree_on_a_dispute_whatever_else_each_has_checked() -> None:
    """The dispute names its evidence: a re-verifier that saw nothing else of the cycle, one that passed many of the
    executor's clean answers, and one that saw many deviating ones all judge the same answers."""
    deviating = [open_task(n) for n in range(2, 40)]
    clean = [open_task(n) for n in range(40, 80)]
    disputed = open_task(1, TaskStatus.DISPUTED, evidence=tuple(t.request_id for t in deviating))
    tasks = [disputed, *deviating, *clean]
    misses = {t.request_id: 1 for t in [disputed, *deviating]} | {t.request_id: 0 for t in clean}
    for seen in ([], clean, deviating[:5]):
        checker, sender = checker_with(tasks, misses)
        for task in seen:
            checker.verdict(task)
        checker._reverify(disputed, 0)
        assert verdicts_of(sender) == [False]

    without_evidence = open_task(1, TaskStatus.DISPUTED)
    for seen in ([], deviating):
        checker, sender = checker_with([without_evidence, *deviating], misses)
        for task in seen:
            checker.verdict(task)
        checker._reverify(without_evidence, 0)
        assert verdicts_of(sender) == [True], "an answer that passes alone, with no evidence, is valid"


def test_evidence_that_passes_together_leaves_the_answer_valid_and_withheld_evidence_fails_it() -> None:
    honest = [open_task(n) for n in range(2, 12)]
    disputed = open_task(1, TaskStatus.DISPUTED, evidence=tuple(t.request_id for t in honest))
    misses = {disputed.request_id: 1} | {t.request_id: 0 for t in honest}
    checker, sender = checker_with([disputed, *honest], misses)
    checker._reverify(disputed, 0)
    assert verdicts_of(sender) == [True], "a checker naming clean answers as evidence does not overturn the answer"

    withheld = dict(misses)
    del withheld[honest[3].request_id]
    checker, sender = checker_with([disputed, *honest], withheld)
    checker._reverify(disputed, 0)
    assert verdicts_of(sender) == [False], "an executor that stops serving its evidence does not escape"


def test_evidence_that_could_not_be_fetched_at_first_is_tried_again_before_the_vote() -> None:
    """Under load one evidence fetch times out: the re-verifier tries again at a later height and votes on what the
    answers are (the timeout alone would have made its vote invalid, against its peers')."""
    honest = [open_task(n) for n in range(2, 12)]
    disputed = open_task(1, TaskStatus.DISPUTED, evidence=tuple(t.request_id for t in honest))
    misses = {disputed.request_id: 1} | {t.request_id: 0 for t in honest}
    checker, sender = checker_with([disputed, *honest], misses, unavailable={honest[3].request_id})
    client = checker.client
    assert isinstance(client, Tasks)
    checker._consider(disputed, client.at, 20)
    assert verdicts_of(sender) == [], "no vote on a timeout"
    client.at += 1
    checker._consider(disputed, client.at, 20)
    assert verdicts_of(sender) == [True]


def test_a_poll_votes_on_disputes_before_it_checks_new_tasks() -> None:
    """A dispute's window is what a vote must meet; the checks owed of new tasks wait behind it."""
    tasks = [open_task(n) for n in range(2, 6)] + [open_task(1, TaskStatus.DISPUTED)]
    checker, _ = checker_with(tasks, misses=0)
    seen: list[TaskStatus] = []
    checker._consider = lambda task, height, check_blocks: seen.append(task.task.status)  # type: ignore[method-assign,assignment]
    checker.poll()
    assert seen[0] == TaskStatus.DISPUTED and len(seen) == len(tasks)
