"""Dishonest executors, for the tests and benchmarks that show the spot check catches them (whitepaper §6).

Each cheat answers a request while saving compute or steering the output, and reports the most convincing
logprobs it can: where a cheap re-scoring pass with the real model makes its logprobs true, it does. So what
remains to catch it is the sampling replay and the ending (`racenet.ml.check`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from racenet.ml.backend import ChatMessage, GenerationRequest
from racenet.ml.check import Answer, Sampling, answer_from_events
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
