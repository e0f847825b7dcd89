"""The position-wise feed-forward networks: the two-layer MLP (GPT-2's GELU, or ReLU²) and SwiGLU (Llama)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.model.config import ModelConfig
from minigpt.model.residual import mark_residual_projection


def relu_squared(x: Tensor) -> Tensor:
    """max(x, 0)² (So et al. 2021, "Primer", §3): found by architecture search, sparser than GELU and
    as cheap as ReLU; modded-nanogpt and nanochat use it in place of GELU."""
    return F.relu(x).square()


def pointwise_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The element-wise non-linearity of a two-layer MLP: `gelu` (erf), `gelu_tanh` (GPT-2's tanh
    approximation) or `relu2`. Shared by the dense MLP and the MoE experts."""
    if name == "relu2":
        return relu_squared
    return partial(F.gelu, approximate="tanh" if name == "gelu_tanh" else "none")


class MLP(nn.Module):
    """`proj(act(fc(x)))`, the GPT-2 block's MLP; `act` is GELU (GPT-2) or ReLU² (`activation=relu2`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.proj = mark_residual_projection(nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias))
        self.act = pointwise_activation(config.activation)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) → (B, T, C)."""
        return self.proj(self.act(self.fc(x)))


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
    return SwiGLU(config) if config.activation == "swiglu" else MLP(config)
