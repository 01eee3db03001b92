"""The default backend: a Hugging Face causal LM run in-process on the CPU with PyTorch.

Generation is a plain loop over the model's forward pass with a KV cache, so the backend sees every step's logits:
it samples each position with the replayable sampler of `racenet.ml.sampling` (one uniform draw per position from
the request's seed, never from global state), reports the model's log-softmax at temperature 1 for each token (see
`racenet.ml.backend`), and checks stop strings on the decoded text. `score` and `next_token_logits` run prompt +
completion through the model once, teacher-forced, with the same weights and the same arithmetic, so they
reproduce an honest generation's logprobs to ~1e-5 (what a spot check, `racenet.ml.check`, relies on).

Thread safety: one model instance runs one generation or scoring at a time. `generate` takes the instance's lock
when its iterator starts and keeps it until the iterator is exhausted or closed, so concurrent requests queue; a
caller that stops reading early must close the iterator (`with contextlib.closing(...)`) or the lock stays held.
The lock is a plain `threading.Lock`, so the iterator may be advanced from different threads (as a thread pool
does); do not call `score` from a thread that holds an open generation. The tokenizer has a lock of its own, so
`tokenize_chat` does not wait for a generation. `threads` sets torch's intra-op thread count, which is
process-wide: on a machine whose cores are busy (a Race miner), 1 thread generated ~14x faster than 2 here.

Fine-tuned models: after `use_adapters(merge)`, a model name starting with `ft:` is served by a copy of this
backend whose weights are `merge(name, base model)` (a LoRA adapter merged in, `racenet.finetune`): generation,
tokenizing and scoring (so spot checks) work for it as for the base model. The last few merged copies are kept.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from racenet.ml.backend import (
    ChatMessage,
    FinishEvent,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    TokenEvent,
    TokenScore,
    TopLogprob,
    Usage,
)
from racenet.ml.errors import InvalidRequestError, UnknownModelError
from racenet.ml.model_files import SMOLLM2, ensure_cached, load_pretrained, packaged_model
from racenet.ml.sampling import fresh_seed, pick, uniform
from racenet.ml.text import TextAssembler

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase

FINE_TUNED_PREFIX = "ft:"
MAX_MERGED = 2
"""Merged fine-tuned copies kept in memory (each is a full copy of the weights: ~540 MB for SmolLM2 in fp32)."""
Merge = Callable[[str, "PreTrainedModel"], "PreTrainedModel"]


class TransformersBackend:
    """Serves one Hugging Face causal LM (SmolLM2-135M-Instruct by default) in fp32 on the CPU.

    `model` and `tokenizer` are the loaded transformers objects (read them, do not run them while a generation is
    under way); `eos_token_ids` are the tokens that end a generation; `threads`, if given, sets torch's thread count
    for the whole process.
    """

    replays_sampling = True
    """It draws with racenet's seeded sampler, so validators replay its samples."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        *,
        threads: int | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.name = name
        self.model = model
        self.model.eval()  # type: ignore[no-untyped-call]
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._token_text: dict[int, str] = {}
        self.context_length: int = int(model.config.max_position_embeddings)
        self.vocab_size: int = int(model.config.vocab_size)
        self.eos_token_ids = _eos_ids(model, tokenizer)
        self._merge: Merge | None = None
        self._merged: OrderedDict[str, TransformersBackend] = OrderedDict()
        self._merged_lock = threading.Lock()

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike[str], name: str | None = None, *, threads: int | None = None
    ) -> TransformersBackend:
        """Load any local Hugging Face causal LM folder (offline); the model is named after the folder by default."""
        model, tokenizer = load_pretrained(folder)
        return cls(model, tokenizer, name or Path(folder).name, threads=threads)

    @classmethod
    def packaged(
        cls,
        name: str = SMOLLM2.name,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> TransformersBackend:
        """Load a model shipped in a PyPI package (SmolLM2 by default) from its safetensors cache, building it once."""
        folder = ensure_cached(packaged_model(name), cache_dir)
        return cls.from_folder(folder, name, threads=threads)

    def in_dtype(self, dtype: torch.dtype) -> TransformersBackend:
        """A copy of this backend with its weights in another dtype (bf16 executors; the check's honest variants)."""
        model = copy.deepcopy(self.model)
        torch.nn.Module.to(model, dtype=dtype)
        return TransformersBackend(model, self.tokenizer, self.name)

    def models(self) -> list[str]:
        """The one model this instance serves (fine-tuned variants are served too, but not listed)."""
        return [self.name]

    def use_adapters(self, merge: Merge) -> None:
        """Serve `ft:` model names with `merge(name, base model)`, which returns the merged model or raises."""
        self._merge = merge

    def for_model(self, model: str | None) -> TransformersBackend:
        """The backend that runs `model`: a merged copy for a fine-tuned name, else this one (what a spot check
        of a fine-tuned model's answer scores with)."""
        if model is None or self._merge is None or not model.startswith(FINE_TUNED_PREFIX):
            return self
        with self._merged_lock:
            backend = self._merged.get(model)
            if backend is None:
                backend = TransformersBackend(self._merge(model, self.model), self.tokenizer, model)
                self._merged[model] = backend
                while len(self._merged) > MAX_MERGED:
                    self._merged.popitem(last=False)
            self._merged.move_to_end(model)
        return backend

    def tokenize_chat(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> list[int]:
        """Prompt token ids for a chat, with the model's chat template and the assistant turn opened.

        Control tokens typed inside messages are encoded as plain text, so a user cannot forge turns.
        """
        if (tuned := self.for_model(model)) is not self:
            return tuned.tokenize_chat(messages)
        self._check_model(model)
        with self._tokenizer_lock:
            return chat_token_ids(self.tokenizer, messages)

    def generate(self, request: GenerationRequest) -> Generator[GenerationEvent, None, None]:
        """Stream a chat completion; the request is checked now, the model runs as the iterator is read."""
        if (tuned := self.for_model(request.model)) is not self:
            return tuned.generate(request)
        self._check_model(request.model)
        prompt = self.tokenize_chat(request.messages)
        if len(prompt) >= self.context_length:
            raise InvalidRequestError(
                f"the prompt has {len(prompt)} tokens; {self.name} takes at most {self.context_length - 1}"
            )
        return self._generate(request, prompt)

    def score(
        self, prompt_token_ids: Sequence[int], completion_token_ids: Sequence[int], *, model: str | None = None
    ) -> list[TokenScore]:
        """Each completion token's model logprob and rank, from one teacher-forced forward pass."""
        completion = list(completion_token_ids)
        if not completion:
            self.next_token_logits(prompt_token_ids, [], model=model)
            return []
        logits = self.next_token_logits(prompt_token_ids, completion, model=model)
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        chosen = logprobs.gather(1, torch.tensor(completion)[:, None])
        ranks = 1 + (logprobs > chosen).sum(dim=1)
        return [
            TokenScore(token_id=t, logprob=float(lp), rank=int(r))
            for t, lp, r in zip(completion, chosen[:, 0].tolist(), ranks.tolist(), strict=True)
        ]

    def next_token_logits(
        self, prompt_token_ids: Sequence[int], completion_token_ids: Sequence[int], *, model: str | None = None
    ) -> torch.Tensor:
        """The fp32 logits that predict each completion token and the one after it: len(completion) + 1 rows.

        One teacher-forced forward pass: what a validator's check runs instead of generating the tokens again.
        """
        if (tuned := self.for_model(model)) is not self:
            return tuned.next_token_logits(prompt_token_ids, completion_token_ids)
        self._check_model(model)
        prompt, completion = list(prompt_token_ids), list(completion_token_ids)
        if not prompt:
            raise InvalidRequestError("scoring needs at least one prompt token")
        ids = prompt + completion
        if len(ids) > self.context_length:
            raise InvalidRequestError(f"{len(ids)} tokens exceed the context length {self.context_length}")
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise InvalidRequestError(f"token ids must be in [0, {self.vocab_size})")
        with self._lock, torch.inference_mode():
            output = self.model(input_ids=torch.tensor([ids]), use_cache=False, logits_to_keep=len(completion) + 1)
            logits: torch.Tensor = output.logits[0].float()
        return logits

    def _generate(self, request: GenerationRequest, prompt: list[int]) -> Generator[GenerationEvent, None, None]:
        seed = fresh_seed() if request.seed is None else request.seed
        budget = min(request.max_tokens, self.context_length - len(prompt))
        assembler = TextAssembler(self.decode, request.stop)
        finish_reason: FinishReason = "length"
        completion_tokens = 0
        with self._lock:
            cache: Cache | None = None
            next_input = torch.tensor([prompt])
            for position in range(budget):
                logprobs, token, cache = self._step(next_input, cache, request, uniform(seed, position))
                if token in self.eos_token_ids:
                    finish_reason = "stop"
                    break
                completion_tokens += 1
                yield TokenEvent(
                    text=assembler.add(token),
                    token_id=token,
                    token=self._token(token),
                    logprob=float(logprobs[token]),
                    top_logprobs=self._top(logprobs, request.top_logprobs),
                )
                if assembler.stopped:
                    finish_reason = "stop"
                    break
                next_input = torch.tensor([[token]])
        yield FinishEvent(finish_reason, Usage(len(prompt), completion_tokens), assembler.flush())

    def _step(
        self,
        input_ids: torch.Tensor,
        cache: Cache | None,
        request: GenerationRequest,
        u: float,
    ) -> tuple[torch.Tensor, int, Cache]:
        """One forward pass: the model's logprobs for the next token, the sampled token, and the updated cache."""
        with torch.inference_mode():
            output = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
            logits = output.logits[0, -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            token = pick(logits, request.temperature, request.top_p, u)
        return logprobs, token, output.cache

    def _top(self, logprobs: torch.Tensor, k: int) -> tuple[TopLogprob, ...]:
        if k == 0:
            return ()
        values, indices = torch.topk(logprobs, k)
        return tuple(
            TopLogprob(token_id=i, token=self._token(i), logprob=v)
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        )

    def _token(self, token_id: int) -> str:
        """The token's own text (special tokens included), memoized: every step asks for up to 21 of them."""
        text = self._token_text.get(token_id)
        if text is None:
            text = self._token_text[token_id] = self.decode([token_id], skip_special_tokens=False)
        return text

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Token ids to text (special tokens dropped unless asked), as the output text is assembled."""
        with self._tokenizer_lock:
            text = self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if not isinstance(text, str):
            raise TypeError(f"the tokenizer decoded one sequence into {type(text).__name__}")
        return text

    def _check_model(self, model: str | None) -> None:
        if model is not None and model != self.name:
            raise UnknownModelError(f"model {model!r} is not served here; this backend serves {self.name!r}")


def chat_token_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[ChatMessage]) -> list[int]:
    """A chat's prompt token ids with the tokenizer's chat template, the assistant turn opened and control tokens
    typed inside messages encoded as plain text (so a user cannot forge turns). Not thread-safe."""
    conversation = [{"role": m["role"], "content": m["content"]} for m in messages]
    ids = tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=False, sanitize_control_tokens=True
    )
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise TypeError(f"the chat template returned {type(ids).__name__}, expected a list of token ids")
    return [i for i in ids if isinstance(i, int)]


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """The token ids that end a generation: the generation config's EOS ids and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in [*(configured if isinstance(configured, list) else [configured]), tokenizer.eos_token_id]:
        if isinstance(value, int):
            ids.add(value)
    return frozenset(ids)
