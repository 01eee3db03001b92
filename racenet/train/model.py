"""A small byte-level GPT in one file (nanoGPT style): the model the training engine's tests and benchmark train.

Tokens are the bytes of UTF-8 text (vocabulary 256), so no tokenizer is needed and any text file is training data.
The architecture is the usual pre-LayerNorm decoder: token + position embeddings, `n_layer` blocks of causal
self-attention and a GELU MLP, a final LayerNorm and a head tied to the token embedding. Weights are initialised
from an explicit `torch.Generator` seed, so every participant of a job builds the identical starting model.
There is no dropout: a training step must be a pure function of (weights, optimizer state, batch), which is what
proof-of-learning re-runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

VOCAB_SIZE = 256
"""Byte-level tokens."""


@dataclass(frozen=True)
class GPTConfig:
    """The shape of the model; `block_size` is the context length in bytes."""

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    vocab_size: int = VOCAB_SIZE


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32),
    "small": GPTConfig(n_layer=4, n_head=4, n_embd=64, block_size=64),
}
"""`tiny` (35k parameters, ~9 ms a step of 8 windows on one core) for tests; `small` (221k, ~50 ms a step of 16
windows) learns visibly on 2 cores in a few minutes."""


class SelfAttention(nn.Module):
    """Multi-head causal self-attention."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out: torch.Tensor = self.proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return out


class Block(nn.Module):
    """One pre-LayerNorm transformer block: attention and MLP, each on a residual branch."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = SelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.out = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        out: torch.Tensor = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return out


class GPT(nn.Module):
    """The decoder; `forward` returns next-byte logits and, given targets, the mean cross-entropy in nats."""

    def __init__(self, config: GPTConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.wte.weight
        self._init_weights(seed)

    def _init_weights(self, seed: int) -> None:
        """GPT-2 initialisation from `seed`: N(0, 0.02), residual projections scaled by 1/sqrt(2·n_layer)."""
        gen = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.dim() == 1:  # LayerNorm gains
                    p.fill_(1.0)
                else:
                    std = residual_std if name.endswith(("proj.weight", "out.weight")) else 0.02
                    p.copy_(torch.randn(p.shape, generator=gen) * std)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds the context of {self.config.block_size}")
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def parameter_count(model: nn.Module) -> int:
    """Distinct trainable parameters (the tied head counts once)."""
    return sum(p.numel() for p in model.parameters())
