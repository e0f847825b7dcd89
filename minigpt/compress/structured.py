"""Structured pruning: remove whole attention heads or MLP neurons, so that the matrices really shrink.

Zeroing weights saves nothing on a dense kernel; removing a head removes its rows from the fused qkv
projection and its columns from the output projection, and removing an MLP neuron removes a row of `fc`
(or of `gate` and `up`) and a column of `proj`. The model is a smaller dense model: every kernel, the KV
cache and the HF export see the smaller shapes, and decoding is faster in proportion.

Which to remove: a head or neuron is as important as what it adds to the residual stream. The output
projection's input channel j carries activation X_j and writes through column W[:, j], so we score a unit
(a neuron: one channel; a head: its `head_dim` channels) by Σ_j ‖X_j‖₂ · ‖W[:, j]‖₂, Wanda's criterion
(Sun et al. 2023) summed over the unit's channels, from calibration text. Michel et al. 2019 ("Are Sixteen
Heads Really Better than One?") show many heads can go with little loss; LLM-Pruner (Ma et al. 2023)
prunes coupled structures like these.

With grouped-query attention a key/value head serves `n_head / n_kv_head` query heads, and the unit is the
whole group (its query heads, its key and its value head). Every layer loses the same number of units
(each layer its own least important ones), since `ModelConfig` has one width per kind of layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from minigpt.model.attention import CausalSelfAttention
from minigpt.model.mlp import MLP, SwiGLU
from minigpt.model.transformer import Transformer
from minigpt.utils.errors import ConfigError


def _rows(linear: nn.Linear, keep: Tensor) -> None:
    """Keep the output features (rows of W, entries of b) `keep` of `linear`, in place."""
    linear.weight = nn.Parameter(linear.weight.detach()[keep].clone())
    if linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias.detach()[keep].clone())
    linear.out_features = len(keep)


def _columns(linear: nn.Linear, keep: Tensor) -> None:
    """Keep the input features (columns of W) `keep` of `linear`, in place."""
    linear.weight = nn.Parameter(linear.weight.detach()[:, keep].clone())
    linear.in_features = len(keep)


def channel_importance(projection: nn.Linear, norms: Tensor) -> Tensor:
    """‖X_j‖₂ · ‖W[:, j]‖₂ for each input channel j of an output projection."""
    return norms * projection.weight.detach().norm(dim=0)


def units_to_keep(importance: Tensor, unit: int, n_keep: int) -> Tensor:
    """Indices (sorted) of the `n_keep` most important units of `unit` consecutive channels each."""
    scores = importance.reshape(-1, unit).sum(dim=1)
    return scores.topk(n_keep).indices.sort().values


def prune_heads(model: Transformer, norms: dict[str, Tensor], sparsity: float) -> int:
    """Remove the fraction `sparsity` of key/value head groups from every layer; returns the groups kept."""
    config = model.config
    per_group = config.n_head // config.n_kv_head
    keep_groups = config.n_kv_head - round(sparsity * config.n_kv_head)
    if keep_groups < 1 or keep_groups == config.n_kv_head:
        raise ConfigError(
            f"sparsity={sparsity} removes {config.n_kv_head - keep_groups} of {config.n_kv_head} head groups "
            f"per layer; choose a sparsity that removes between 1 and {config.n_kv_head - 1} of them."
        )
    hd = config.head_dim
    for i, block in enumerate(model.blocks):
        attn: CausalSelfAttention = block.attn
        importance = channel_importance(attn.proj, norms[f"blocks.{i}.attn.proj"])  # (n_head·hd,)
        groups = units_to_keep(importance, per_group * hd, keep_groups)  # kv groups kept
        heads = (groups[:, None] * per_group + torch.arange(per_group)).reshape(-1)  # their query heads
        q_rows = (heads[:, None] * hd + torch.arange(hd)).reshape(-1)
        kv_rows = (groups[:, None] * hd + torch.arange(hd)).reshape(-1)
        q_width, kv_width = config.n_head * hd, config.n_kv_head * hd
        _rows(attn.qkv, torch.cat([q_rows, q_width + kv_rows, q_width + kv_width + kv_rows]))
        _columns(attn.proj, q_rows)
        attn.n_head, attn.n_kv_head = len(heads), len(groups)
    config.attn_head_dim = hd
    config.n_head, config.n_kv_head = keep_groups * per_group, keep_groups
    return keep_groups


def prune_neurons(model: Transformer, norms: dict[str, Tensor], sparsity: float) -> int:
    """Remove the fraction `sparsity` of MLP hidden neurons from every layer; returns the width kept."""
    keep = model.config.mlp_hidden - round(sparsity * model.config.mlp_hidden)
    if keep < 1:
        raise ConfigError(f"sparsity={sparsity} would remove every MLP neuron; choose a smaller sparsity.")
    for i, block in enumerate(model.blocks):
        mlp = block.ffn
        if not isinstance(mlp, MLP | SwiGLU):
            raise ConfigError("method=neurons prunes dense MLPs; this model has experts: use method=experts.")
        kept = units_to_keep(channel_importance(mlp.proj, norms[f"blocks.{i}.ffn.proj"]), 1, keep)
        for linear in (mlp.fc,) if isinstance(mlp, MLP) else (mlp.gate, mlp.up):
            _rows(linear, kept)
        _columns(mlp.proj, kept)
    model.config.mlp_hidden = keep
    return keep
