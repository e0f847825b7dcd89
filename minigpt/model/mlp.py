"""The position-wise feed-forward networks: GELU MLP (GPT-2) and SwiGLU (Llama)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.model.config import ModelConfig
from minigpt.model.residual import mark_residual_projection


class GeluMLP(nn.Module):
    """`proj(gelu(fc(x)))`, the GPT-2 block's MLP; `gelu_tanh` is GPT-2's tanh approximation."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.proj = mark_residual_projection(nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias))
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) → (B, T, C)."""
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


class SwiGLU(nn.Module):
    """`proj(silu(gate(x)) * up(x))` (Shazeer 2020, "GLU Variants Improve Transformer", eq. 6)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.up = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.proj = mark_residual_projection(nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) → (B, T, C)."""
        return self.proj(F.silu(self.gate(x)) * self.up(x))


def build_mlp(config: ModelConfig) -> nn.Module:
    """The dense feed-forward network that `config.activation` names."""
    return SwiGLU(config) if config.activation == "swiglu" else GeluMLP(config)
