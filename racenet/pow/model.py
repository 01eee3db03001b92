"""The Race transformer: a pre-LN transformer whose weights come from the race seed.

Read top to bottom: token and position embeddings, `n_layers` blocks of multi-head self-attention and a GELU
feed-forward network, each on a LayerNorm of the residual stream, and a final LayerNorm. The Race uses the last
position's vector (d_model values), so there is no output head.

The whitepaper gives only the dimensions. The rest is chosen so that the output is a thoroughly mixed function
of every input token, with no direction shared by all inputs: any part of the output that is cheaper to predict
than to compute would let a miner pick promising nonces without running the model. The architecture alone did
not stop that on `tiny` (2 layers: a per-token table of mean outputs predicted them with cosine 0.79, security
review H4), so the task also measures each output against a target its own signs pick (`racenet.pow.vectors`):
a predictor must reproduce the final output's signs exactly to know what it is scored against. Measured by
`bench/prescreen.py` (per-token table, half the layers, all layers without attention): no predictor gains over
honest mining on any preset (figures in vectors.py and docs/race.md).

Measured on the paper preset (48 random input pairs, cosine of the outputs): unrelated inputs 0.007; inputs
sharing one of their four tokens 0.07 to 0.17 (the last, read position most); inputs differing in one token
0.37 to 0.48. Probes at the paper's depth (64 layers, d_model 128) showed what
each choice does:
- Bidirectional attention. With causal attention, position 0 sees only token 0 through all 64 layers and the
  output leaned on it (two inputs sharing only their first token: cosine 0.70; bidirectional: 0.06).
- Row-centred linear weights. GELU's output has a positive mean, so W_down @ GELU(...) adds the same vector to
  every input's residual stream; without centring two unrelated inputs had cosine 0.20, with it 0.001.
- Position embeddings with std 0.1 (tokens: std 1): positions are shared by all inputs too (std 1: cosine 0.5).
- Attention logits `ATTENTION_SHARPNESS` (4) times the usual 1 / sqrt(head_dim): sharper attention mixes the
  tokens more nonlinearly (sharing one token: cosine 0.15 -> 0.07; changing one token: 0.60 -> 0.40), at the
  price of more bf16 drift (1 - cosine to fp32: 2e-4 -> 8e-4). Twice as sharp made bf16 useless (2e-2).
- No biases and no LayerNorm gain/shift: at initialisation they would be constants (0 and 1), so every parameter
  here is drawn from the seed and all of them take part in the computation.
- Linear weights uniform with std 1 / sqrt(fan_in) and residual branches at full scale: activations stay O(1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from racenet.pow.presets import Preset
from racenet.pow.rng import fill_uniform

ATTENTION_SHARPNESS = 4.0
POSITION_STD = 0.1


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention without biases, logits sharpened by `ATTENTION_SHARPNESS`."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.n_heads = preset.n_heads
        self.qkv = nn.Linear(preset.d_model, 3 * preset.d_model, bias=False)
        self.proj = nn.Linear(preset.d_model, preset.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, scale=ATTENTION_SHARPNESS / math.sqrt(q.shape[-1]))
        out: torch.Tensor = self.proj(y.transpose(1, 2).reshape(batch, seq, width))
        return out


class FeedForward(nn.Module):
    """Two linear maps with an exact (erf) GELU between them."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.up = nn.Linear(preset.d_model, preset.d_ff, bias=False)
        self.down = nn.Linear(preset.d_ff, preset.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down(F.gelu(self.up(x)))
        return out


class Block(nn.Module):
    """Pre-LN transformer block: x + attention(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(preset.d_model, elementwise_affine=False)
        self.attn = SelfAttention(preset)
        self.ln2 = nn.LayerNorm(preset.d_model, elementwise_affine=False)
        self.ffn = FeedForward(preset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        out: torch.Tensor = x + self.ffn(self.ln2(x))
        return out


class RaceTransformer(nn.Module):
    """Token ids (batch, seq_len) -> the last position's final hidden vector (batch, d_model)."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        self.tok = nn.Embedding(preset.vocab_size, preset.d_model)
        self.pos = nn.Parameter(torch.empty(preset.seq_len, preset.d_model))
        self.blocks = nn.ModuleList(Block(preset) for _ in range(preset.n_layers))
        self.ln_f = nn.LayerNorm(preset.d_model, elementwise_affine=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens) + self.pos
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.ln_f(x[:, -1, :])
        return out


def init_spec(name: str, param: torch.Tensor) -> tuple[float, int]:
    """(half-width, row) of the uniform init of `name`: embeddings std 1 (positions 0.1), weights centred rows."""
    if name == "tok.weight":
        return math.sqrt(3.0), 1
    if name == "pos":
        return POSITION_STD * math.sqrt(3.0), 1
    fan_in = param.shape[1]
    return math.sqrt(3.0 / fan_in), fan_in


def build_model(preset: Preset, race_seed: bytes, dtype: torch.dtype = torch.float32) -> RaceTransformer:
    """The Race transformer of `preset` for `race_seed`, bitwise the same on every device, in eval mode."""
    with torch.device("meta"):
        model = RaceTransformer(preset)
    model = model.to_empty(device="cpu")
    params = {name: (param.data, *init_spec(name, param)) for name, param in model.named_parameters()}
    fill_uniform(params, race_seed)
    return model.to(dtype).eval().requires_grad_(False)
