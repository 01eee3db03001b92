"""The inference backend interface the node uses, and the values that cross it.

A backend serves one or more causal language models. The node asks it to stream a chat completion token by token
(`generate`), to turn chat messages into the prompt's token ids (`tokenize_chat`), and to re-score a completion in
one teacher-forced forward pass (`score`). The last is what a validator's spot check runs (DESIGN §3, "What a check
compares"): it compares the executor's reported per-token log-probabilities with its own, and looks at each
token's rank under the model.

Log-probabilities. Every `logprob` here is the model's: the log-softmax of the raw logits at temperature 1, before
temperature, top-p or any other sampling transform. That is the quantity a validator can recompute from the token
ids alone, so it is what an executor reports even when it sampled at another temperature.

Token accounting. `TokenEvent`s are the sampled completion tokens in order; the end-of-sequence token that ends a
generation is neither emitted nor counted (as with OpenAI's logprobs). When a stop string ends the generation, the
token that completed it is still emitted (it was sampled and is scored), but the text stops before the stop string.
The output text is the concatenation of every event's `text`, the `FinishEvent`'s included.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

from racenet.ml.errors import InvalidRequestError

FinishReason = Literal["stop", "length"]

DEFAULT_MAX_TOKENS = 256
"""The completion budget of a request that names none (OpenAI leaves it to the server)."""
MAX_TOP_LOGPROBS = 20
MAX_STOP_STRINGS = 4
MAX_TEMPERATURE = 2.0
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


class ChatMessage(TypedDict):
    """One message in OpenAI chat format (text content only)."""

    role: str
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """A chat completion to generate; validated on construction so a bad request never reaches a model.

    `temperature` 0 means greedy decoding. With `seed` set, sampling is reproducible on the same backend and
    machine. `top_logprobs` (0-20) asks for that many most likely alternatives per generated token.
    """

    model: str
    messages: Sequence[ChatMessage]
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        if not self.messages:
            raise InvalidRequestError("messages must not be empty")
        for message in self.messages:
            if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
                raise InvalidRequestError(f"each message needs a role in {sorted(ROLES)} and a string 'content'")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InvalidRequestError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if not 0.0 <= self.temperature <= MAX_TEMPERATURE:
            raise InvalidRequestError(f"temperature must be in [0, {MAX_TEMPERATURE}], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidRequestError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidRequestError(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs}")
        if len(self.stop) > MAX_STOP_STRINGS or any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidRequestError(f"stop takes at most {MAX_STOP_STRINGS} non-empty strings")


@dataclass(frozen=True)
class TopLogprob:
    """One of the most likely tokens at a position, with its model log-probability."""

    token_id: int | None
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenEvent:
    """One sampled token: the output text it adds, its id, its model log-probability and the top alternatives.

    `text` may be empty while text is held back (an incomplete UTF-8 character, or a possible start of a stop
    string); `token` is the token's own text. `token_id` is None only when a remote server does not report ids.
    """

    text: str
    token_id: int | None
    token: str
    logprob: float
    top_logprobs: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation, as billed."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class FinishEvent:
    """The last event of a generation: why it ended, the usage, and any text held back until the end."""

    finish_reason: FinishReason
    usage: Usage
    text: str = ""


GenerationEvent = TokenEvent | FinishEvent


@dataclass(frozen=True)
class TokenScore:
    """A completion token re-scored under the model: its log-probability and rank (1 = the most likely token).

    Backends that see only the top-k alternatives (remote servers) report rank k + 1 for any token outside them.
    """

    token_id: int
    logprob: float
    rank: int


@dataclass(frozen=True)
class Completion:
    """A whole generation gathered from its events (for non-streaming answers and for checks)."""

    text: str
    tokens: tuple[TokenEvent, ...]
    finish_reason: FinishReason
    usage: Usage

    @property
    def token_ids(self) -> list[int | None]:
        """The sampled token ids in order."""
        return [t.token_id for t in self.tokens]


def collect(events: Iterable[GenerationEvent]) -> Completion:
    """Gather a generation's event stream into one `Completion`; the stream must end with a `FinishEvent`."""
    tokens: list[TokenEvent] = []
    parts: list[str] = []
    for event in events:
        parts.append(event.text)
        if isinstance(event, FinishEvent):
            return Completion("".join(parts), tuple(tokens), event.finish_reason, event.usage)
        tokens.append(event)
    raise ValueError("the event stream ended without a FinishEvent")


class Backend(Protocol):
    """What the node needs from an inference engine; see the module docstring for the logprob convention.

    `model` arguments default to the backend's first model. `generate` holds resources (a model lock) until its
    iterator is exhausted or closed: close it if you stop reading early.
    """

    @property
    def replays_sampling(self) -> bool:
        """Whether its sampled tokens (temperature > 0) are the request's seeded draws, which validators replay
        (racenet's sampler); an engine drawing with its own RNG answers only greedy requests."""
        ...

    def models(self) -> list[str]:
        """The model names this backend serves."""
        ...

    def generate(self, request: GenerationRequest) -> Generator[GenerationEvent, None, None]:
        """Stream a chat completion: one `TokenEvent` per sampled token, then one `FinishEvent`."""
        ...

    def tokenize_chat(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> list[int]:
        """The prompt token ids `generate` feeds the model for these messages (chat template applied)."""
        ...

    def score(
        self, prompt_token_ids: Sequence[int], completion_token_ids: Sequence[int], *, model: str | None = None
    ) -> list[TokenScore]:
        """Re-score a completion in one teacher-forced forward pass: each completion token's logprob and rank."""
        ...
