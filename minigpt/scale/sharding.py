"""What `Stage` does to the model and optimizer: compile blocks, shard with FSDP2 or shard the optimizer
state (ZeRO-1); and the way back.

FSDP2 (`fully_shard`) turns each parameter into a `DTensor` holding 1/world of its rows. Each block is
its own unit: its parameters are all-gathered just before its forward (and backward) and freed right
after, so peak memory holds one block in full rather than the whole model (Zhao et al. 2023, PyTorch
FSDP §3.2). The root unit takes whatever is left (embeddings, final norm, head).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from torch.optim import Optimizer

from minigpt.model.transformer import Transformer
from minigpt.scale.expert_parallel import gather_expert_parallel_model, is_expert_parallel
from minigpt.scale.pipeline import gather_pipeline_model, is_pipeline_stage
from minigpt.scale.tensor_parallel import plain_qkv_rows


def compile_blocks(model: Transformer) -> None:
    """`torch.compile` each block in place; the parameter names (and so checkpoints) do not change.

    Compiling per block rather than the whole model keeps graphs small, identical across blocks (one
    compilation reused n_layer times) and composes with per-block sharding.
    """
    for block in model.blocks:
        block.compile()


def shard_stage(stage: nn.Module, model: Transformer, mesh: object, reshard_after_forward: bool = True) -> None:
    """Apply FSDP2 to every block of `model`, then to each child of `stage` that owns parameters.

    Sharding the stage's children (not the LightningModule itself) covers heads that a stage keeps beside
    the trunk, while leaving the LightningModule's class alone. `reshard_after_forward=False` keeps the
    gathered weights until backward has used them (ZeRO-2 rather than ZeRO-3, see `FSDP2Strategy`).
    """
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
    for child in stage.children():
        if any(True for _ in child.parameters()):
            fully_shard(child, mesh=mesh, reshard_after_forward=reshard_after_forward)


def build_optimizer(factory: partial[Optimizer], groups: list[dict[str, Any]], shard_state: bool) -> Optimizer:
    """`factory(groups)`, or with `shard_state` the same optimizer as a `ZeroRedundancyOptimizer` (ZeRO-1).

    `factory` is the `functools.partial` Hydra makes of `optim.optimizer`; its keywords become the
    sharded optimizer's defaults. The caller instantiates it with `_convert_="all"`: the keywords land in
    the optimizer's state dict and so in checkpoints, where an OmegaConf `ListConfig` of betas would make
    `torch.load(weights_only=True)` refuse the file.
    """
    if not shard_state:
        return factory(groups)
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return ZeroRedundancyOptimizer(groups, optimizer_class=factory.func, **factory.keywords)


def is_sharded(model: nn.Module) -> bool:
    """Whether `model`'s weights are spread over the ranks: a sharded `DTensor` parameter, a pipeline stage, or
    experts split over the ranks."""
    return (
        is_pipeline_stage(model) or is_expert_parallel(model) or any(isinstance(p, DTensor) for p in model.parameters())
    )


def unshard_stage(stage: nn.Module) -> None:
    """After training: swap a sharded `stage.model` for a plain full copy on rank 0, for export and samples.

    A collective when the model is sharded (every rank must call it); a no-op otherwise.
    """
    if not is_sharded(stage.model):
        return
    full = gather_full_model(stage.model)
    if full is not None:
        stage.model = full.to(stage.device)


def gather_full_model(model: Transformer) -> Transformer | None:
    """A plain (unsharded, CPU) copy of a sharded model on global rank 0; `None` on the other ranks.

    Every rank must call it: gathering the full weights is a collective.
    """
    if is_pipeline_stage(model):  # strategy=pipeline: each rank holds some blocks in full
        return gather_pipeline_model(model)
    if is_expert_parallel(model):
        return gather_expert_parallel_model(model)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)  # full on rank 0, empty elsewhere
    if torch.distributed.get_rank() != 0:
        return None
    plain = Transformer(model.config)
    plain.load_state_dict(plain_qkv_rows(state, model))  # tensor parallelism reordered the qkv rows
    return plain
