"""Model surgery for mixtures of experts: sparse upcycling of a dense model, and expert pruning."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
from torch import Tensor

from minigpt.model.config import MoEConfig
from minigpt.model.moe import MoELayer
from minigpt.model.transformer import Transformer
from minigpt.utils.errors import ConfigError
from minigpt.utils.modes import eval_mode


def _moe_layers(model: Transformer) -> list[MoELayer]:
    """The model's MoE feed-forward layers, in depth order."""
    return [block.ffn for block in model.blocks if isinstance(block.ffn, MoELayer)]


def _copy_trunk(source: Transformer, target: Transformer) -> list[str]:
    """Copy every tensor the two models share by name and shape; return the target keys left untouched."""
    source_state = source.state_dict()
    target_state = target.state_dict()
    shared = {k: v for k, v in source_state.items() if k in target_state and v.shape == target_state[k].shape}
    target.load_state_dict(shared, strict=False)
    return sorted(set(target_state) - set(shared))


def upcycle(dense: Transformer, moe: MoEConfig) -> Transformer:
    """Sparse upcycling (Komatsuzaki et al. 2022, §3): the dense model with its MLPs turned into experts.

    In every block that `moe.every_n_layers` selects, each expert starts as a copy of that block's dense
    MLP (so experts are as wide as the MLP, whatever `moe.expert_hidden` says) and the router is freshly
    initialised; everything else is copied. With top-k routing and renormalised gates the gates of a
    token sum to 1 over identical experts, so the upcycled model computes exactly its parent's function
    until training moves the experts apart.
    """
    if dense.config.moe is not None:
        raise ConfigError("init_from is already a mixture of experts; upcycle a dense model (or use stage=pretrain).")
    if moe.num_shared_experts:
        raise ConfigError(
            f"model.moe.num_shared_experts={moe.num_shared_experts}: upcycling copies the MLP into routed "
            "experts only; set model.moe.num_shared_experts=0."
        )
    config = dataclasses.replace(dense.config, moe=dataclasses.replace(moe, expert_hidden=None))
    model = Transformer(config)
    untouched = _copy_trunk(dense, model)
    for block, dense_block in zip(model.blocks, dense.blocks):
        if isinstance(block.ffn, MoELayer):
            block.ffn.experts.copy_dense_(dense_block.get_submodule("ffn"))
    fresh = [k for k in untouched if ".ffn.router." not in k and ".ffn.experts." not in k]
    assert not fresh, f"upcycling left {fresh} uninitialised"
    return model


@torch.no_grad()
def expert_load(model: Transformer, batches: Iterable[Tensor]) -> Tensor:
    """Usage of every expert, (num MoE layers, E): the `load` statistic averaged over token batches.

    Token choice: share of routing assignments; expert choice: share of gate weight (see `MoELayer`).
    """
    total, tokens = None, 0
    with eval_mode(model):
        for idx in batches:
            _, aux = model(idx)
            load = torch.stack([stats["load"] for stats in aux["moe"]]) * idx.numel()
            total = load if total is None else total + load
            tokens += idx.numel()
    if total is None:
        raise ConfigError("expert_load got no batches; give it some text to route.")
    return total / tokens


def prune_experts(model: Transformer, load: Tensor, keep: int) -> Transformer:
    """A copy of `model` that keeps, in each MoE layer, the `keep` experts with the highest `load`.

    The router keeps the matching rows, so each token's softmax is renormalised over the surviving
    experts; everything else is copied unchanged.

    Args:
        load: (num MoE layers, E) usage, e.g. from `expert_load`.
        keep: experts per layer to keep, from max(top_k, 2) to E-1.
    """
    moe = model.config.moe
    if moe is None:
        raise ConfigError("The model has no experts to prune (model.moe is null).")
    if not max(moe.top_k, 2) <= keep < moe.num_experts:
        raise ConfigError(
            f"keep={keep} experts must be below num_experts={moe.num_experts} and at least 2 and top_k={moe.top_k}."
        )
    layers = _moe_layers(model)
    if load.shape != (len(layers), moe.num_experts):
        raise ConfigError(f"load has shape {tuple(load.shape)}, expected ({len(layers)}, {moe.num_experts}).")
    pruned = Transformer(dataclasses.replace(model.config, moe=dataclasses.replace(moe, num_experts=keep)))
    _copy_trunk(model, pruned)
    for source, target, usage in zip(layers, _moe_layers(pruned), load):
        index = usage.topk(keep).indices.sort().values  # keep the original expert order
        target.router.weight.data.copy_(source.router.weight.data[index])
        target.experts.copy_experts_(source.experts, index)
    return pruned
