"""Dishonest executors, for the tests and benchmarks that show the spot check catches them (whitepaper §6).

Each cheat answers a request while saving compute or steering the output, and reports the most convincing
logprobs it can: where a cheap re-scoring pass with the real model makes its logprobs true, it does. So what
remains to catch it is the sampling replay and the ending (`racenet.ml.check`). `CheatingBackend` puts them behind
a node's executor, one cheat per request in turn (the devnet test's cheating node).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Generator, Sequence
from typing import Literal

import torch

from racenet.ml.backend import (
    ChatMessage,
    FinishEvent,
    GenerationEvent,
    GenerationRequest,
    TokenEvent,
    TokenScore,
    Usage,
)
from racenet.ml.check import Answer, Sampling, answer_from_events
from racenet.ml.sampling import fresh_seed
from racenet.ml.text import TextAssembler
from racenet.ml.transformers_backend import TransformersBackend

Cheat = Literal["smaller_model", "perturbed_weights", "advertisement", "random_tokens", "empty", "prefill"]
CHEATS: tuple[Cheat, ...] = ("smaller_model", "perturbed_weights", "advertisement", "random_tokens", "empty", "prefill")
ADVERTISEMENT = " Visit cheap-tokens.example for the best deals on GPUs!"
SMALLER_LAYERS = 20
"""Decoder layers the smaller model keeps (SmolLM2-135M has 30): a third less compute per token."""
PERTURBATION = 0.2
"""Relative noise on every weight matrix of the perturbed model."""


def generate(executor: TransformersBackend, messages: Sequence[ChatMessage], sampling: Sampling) -> Answer:
    """An answer as `executor` generates it with the request's sampling parameters and seed."""
    request = GenerationRequest(
        executor.name,
        messages,
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        seed=sampling.seed,
        stop=sampling.stop,
    )
    return answer_from_events(list(executor.generate(request)))


def rescored(model: TransformersBackend, prompt: Sequence[int], tokens: Sequence[int], finish: str) -> Answer:
    """An answer made of `tokens` whose logprobs the real model computed (one cheap teacher-forced pass)."""
    logprobs = tuple(s.logprob for s in model.score(prompt, tokens)) if tokens else ()
    return Answer(tuple(tokens), logprobs, "length" if finish == "length" else "stop", model.decode(list(tokens)))


def smaller(model: TransformersBackend, layers: int = SMALLER_LAYERS) -> TransformersBackend:
    """The same model with only its first `layers` decoder layers: a cheaper model with the same tokenizer."""
    cut = copy.deepcopy(model.model)
    inner = cut.model
    inner.layers = inner.layers[:layers]
    cut.config.num_hidden_layers = layers
    return TransformersBackend(cut, model.tokenizer, model.name)


def perturbed(model: TransformersBackend, scale: float = PERTURBATION, seed: int = 5) -> TransformersBackend:
    """The model with every weight matrix nudged by Gaussian noise of `scale` times its spread (another fine-tune)."""
    nudged = copy.deepcopy(model.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in nudged.parameters():
            if parameter.dim() == 2:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * parameter.std() * scale)
    return TransformersBackend(nudged, model.tokenizer, model.name)


def cheater(kind: Cheat, model: TransformersBackend) -> Callable[[Sequence[ChatMessage], Sampling], Answer]:
    """A function answering like a cheating executor of `kind` that holds the real `model` (built once per cheat)."""
    if kind == "smaller_model":
        small = smaller(model)
        return lambda messages, sampling: generate(small, messages, sampling)
    if kind == "perturbed_weights":
        nudged = perturbed(model)
        return lambda messages, sampling: generate(nudged, messages, sampling)
    if kind == "prefill":
        writer = smaller(model)

        def prefill(messages: Sequence[ChatMessage], sampling: Sampling) -> Answer:
            written = generate(writer, messages, sampling)
            return rescored(model, model.tokenize_chat(messages), written.token_ids, written.finish_reason)

        return prefill
    if kind == "advertisement":

        def advertise(messages: Sequence[ChatMessage], sampling: Sampling) -> Answer:
            honest = generate(model, messages, sampling)
            ad = model.tokenizer.encode(ADVERTISEMENT, add_special_tokens=False)
            tokens = [*honest.token_ids[: max(0, sampling.max_tokens - len(ad))], *ad][: sampling.max_tokens]
            finish = "length" if len(tokens) == sampling.max_tokens else "stop"
            return rescored(model, model.tokenize_chat(messages), tokens, finish)

        return advertise
    if kind == "random_tokens":

        def noise(messages: Sequence[ChatMessage], sampling: Sampling) -> Answer:
            rng = random.Random(sampling.seed)
            tokens = [rng.randrange(model.vocab_size) for _ in range(sampling.max_tokens)]
            return rescored(model, model.tokenize_chat(messages), tokens, "length")

        return noise
    return lambda messages, sampling: Answer((), (), "stop", "")


class CheatingBackend:
    """An executor backend that serves `model`'s name but answers every request with a cheat, the cheats in turn.

    Request n gets `kinds[n % len(kinds)]`; `served` records which cheat answered the request of each sampling seed
    (the executor derives it from the request id: `racenet.ml.sampling.request_sampling_seed`). Prompts are
    tokenized and scored by the real model, so the executor accepts and settles its requests as usual.
    """

    replays_sampling = True
    """It claims to, like an honest executor (its answers are what the checks judge)."""

    def __init__(self, model: TransformersBackend, kinds: Sequence[Cheat] = CHEATS) -> None:
        self.model = model
        self.answerers = [(kind, cheater(kind, model)) for kind in kinds]
        self.served: dict[int, Cheat] = {}

    def models(self) -> list[str]:
        """The real model's name."""
        return self.model.models()

    def tokenize_chat(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> list[int]:
        """The real model's prompt tokens."""
        return self.model.tokenize_chat(messages, model=model)

    def score(
        self, prompt_token_ids: Sequence[int], completion_token_ids: Sequence[int], *, model: str | None = None
    ) -> list[TokenScore]:
        """The real model's scores."""
        return self.model.score(prompt_token_ids, completion_token_ids, model=model)

    def generate(self, request: GenerationRequest) -> Generator[GenerationEvent, None, None]:
        """Stream the next cheat's answer, token by token as a real backend would; the cheat runs as it is read."""
        prompt = self.model.tokenize_chat(request.messages, model=request.model)
        seed = fresh_seed() if request.seed is None else request.seed
        kind, answer = self.answerers[len(self.served) % len(self.answerers)]
        self.served[seed] = kind
        sampling = Sampling(request.temperature, request.top_p, seed, request.max_tokens, request.stop)
        return self._stream(answer, request.messages, sampling, len(prompt))

    def _stream(
        self,
        answer: Callable[[Sequence[ChatMessage], Sampling], Answer],
        messages: Sequence[ChatMessage],
        sampling: Sampling,
        prompt_tokens: int,
    ) -> Generator[GenerationEvent, None, None]:
        """The cheat's answer as generation events: one per token (text up to any stop string), then the finish."""
        cheat = answer(messages, sampling)
        assembler = TextAssembler(self.model.decode, sampling.stop)
        finish, count = cheat.finish_reason, 0
        for token, logprob in zip(cheat.token_ids, cheat.logprobs, strict=True):
            count += 1
            yield TokenEvent(
                assembler.add(token), token, self.model.decode([token], skip_special_tokens=False), logprob
            )
            if assembler.stopped:
                finish = "stop"
                break
        yield FinishEvent(finish, Usage(prompt_tokens, count), assembler.flush())
