"""LoRA fine-tuning of a causal LM on chat examples, on the CPU, in one short file (nanoGPT-style).

An example is tokenized with the model's chat template; the loss is the cross-entropy of the last assistant
turn only (its text and end-of-turn token), so the model learns to answer, not to echo prompts. Low-rank adapters
(peft) go on the attention and MLP projections; the base weights stay frozen. Training is seeded (adapter init,
shuffling), so one machine reproduces a run.

An adapter is ONE safetensors file: the LoRA tensors plus its config in the file's metadata. Its SHA-256 is the
adapter's identity: the chain records it, a node serving the fine-tuned model fetches the file by it and checks it.
Loading merges the adapter into a copy of the base weights, so a fine-tuned model runs (and is spot-checked)
exactly like a base model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from racenet.finetune.data import DataError, Example

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

IGNORE = -100
"""Label of a token the loss skips (the prompt)."""
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
METADATA_KEY = "racenet_lora"


@dataclass(frozen=True)
class Hyperparameters:
    """A job's training settings; OpenAI's `learning_rate_multiplier` scales `BASE_LEARNING_RATE`."""

    n_epochs: int = 4
    batch_size: int = 4
    learning_rate_multiplier: float = 1.0
    rank: int = 8
    alpha: int = 16
    seed: int = 0

    @property
    def learning_rate(self) -> float:
        """The AdamW learning rate."""
        return BASE_LEARNING_RATE * self.learning_rate_multiplier


BASE_LEARNING_RATE = 2e-3


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: input ids and their labels (IGNORE outside the answer)."""

    ids: list[int]
    labels: list[int]


def encode(tokenizer: PreTrainedTokenizerBase, example: Example, max_tokens: int) -> Encoded:
    """Tokenize a conversation with the chat template; only the last (assistant) turn is learned."""
    context, full = _template(tokenizer, example.messages[:-1], True), _template(tokenizer, example.messages, False)
    if full[: len(context)] != context or len(full) <= len(context):
        raise DataError("the chat template does not extend the prompt with the answer; cannot train on it")
    if len(full) > max_tokens:
        raise DataError(f"an example has {len(full)} tokens; at most {max_tokens} are accepted")
    return Encoded(full, [IGNORE] * len(context) + full[len(context) :])


def _template(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Any], generation_prompt: bool) -> list[int]:
    conversation = [{"role": m["role"], "content": m["content"]} for m in messages]
    ids = tokenizer.apply_chat_template(
        conversation,
        add_generation_prompt=generation_prompt,
        tokenize=True,
        return_dict=False,
        sanitize_control_tokens=True,
    )
    if not isinstance(ids, list):
        raise DataError("the chat template did not return token ids")
    return [i for i in ids if isinstance(i, int)]


def training_tokens(encoded: Sequence[Encoded]) -> int:
    """Tokens of one epoch (what a job is priced by, times its epochs)."""
    return sum(len(e.ids) for e in encoded)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def batches(encoded: Sequence[Encoded], size: int, rng: random.Random, pad_id: int) -> list[Batch]:
    """One epoch in shuffled, right-padded batches: (input ids, attention mask, labels)."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    out: list[Batch] = []
    for start in range(0, len(order), size):
        group = [encoded[i] for i in order[start : start + size]]
        width = max(len(e.ids) for e in group)
        ids = torch.tensor([e.ids + [pad_id] * (width - len(e.ids)) for e in group])
        mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in group])
        labels = torch.tensor([e.labels + [IGNORE] * (width - len(e.labels)) for e in group])
        out.append((ids, mask, labels))
    return out


def add_lora(model: PreTrainedModel, hp: Hyperparameters) -> Any:
    """A peft model: a deep copy of `model` with trainable low-rank adapters, base weights frozen."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(hp.seed)
    config = LoraConfig(r=hp.rank, lora_alpha=hp.alpha, lora_dropout=0.0, target_modules=list(TARGET_MODULES))
    return get_peft_model(copy.deepcopy(model), config)


StepCallback = Callable[[int, int, float], bool]
"""Called after each step with (step, total steps, loss); returning False stops training."""


def train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: Sequence[Encoded],
    hp: Hyperparameters,
    on_step: StepCallback,
) -> Any | None:
    """Train LoRA adapters on `encoded`; the peft model, or None if `on_step` stopped it."""
    lora = add_lora(model, hp)
    lora.train()
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=hp.learning_rate)
    rng = random.Random(hp.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps_per_epoch = -(-len(encoded) // hp.batch_size)
    total, step = steps_per_epoch * hp.n_epochs, 0
    for _ in range(hp.n_epochs):
        for ids, mask, labels in batches(encoded, hp.batch_size, rng, pad):
            loss = lora(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if not on_step(step, total, loss.item()):
                return None
    lora.eval()
    return lora


def save_adapter(lora: Any, path: Path, hp: Hyperparameters) -> str:
    """Write the adapter as one safetensors file (config in its metadata), atomically; its SHA-256 (hex)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(lora).items()}
    config = {"rank": hp.rank, "alpha": hp.alpha, "target_modules": list(TARGET_MODULES)}
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={METADATA_KEY: json.dumps(config, sort_keys=True)})
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    partial.replace(path)
    return file_hash(path)


def file_hash(path: Path) -> str:
    """SHA-256 (hex) of a file: an adapter's identity."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def merged_model(base: PreTrainedModel, path: Path) -> PreTrainedModel:
    """A copy of `base` with the adapter in `path` merged into its weights (eval mode)."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        config = json.loads((f.metadata() or {})[METADATA_KEY])
    lora_config = LoraConfig(
        r=config["rank"], lora_alpha=config["alpha"], lora_dropout=0.0, target_modules=config["target_modules"]
    )
    lora = get_peft_model(copy.deepcopy(base), lora_config)
    set_peft_model_state_dict(lora, load_file(str(path)))
    merged: PreTrainedModel = lora.merge_and_unload()  # type: ignore[assignment]
    merged.eval()  # type: ignore[no-untyped-call]
    return merged


def hyperparameters_json(hp: Hyperparameters) -> dict[str, Any]:
    """The settings as stored with a job."""
    return asdict(hp)
