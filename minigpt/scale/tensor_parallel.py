"""Tensor parallelism (Shoeybi et al. 2019, "Megatron-LM", §3) with DTensor: `strategy=tensor_parallel`.

Each block's attention and MLP are split across the T processes of the tensor-parallel axis:

- the first linear of each pair is column-parallel (`ColwiseParallel`): rank r keeps rows r of its output
  features, so it computes its own heads of attention (n_head/T query heads, n_kv_head/T key/value heads)
  and its own slice of the MLP's hidden units, with no communication (Megatron eq. 3: GeLU(XA) split by
  columns of A needs no synchronisation);
- the second is row-parallel (`RowwiseParallel`): each rank multiplies its slice of the inputs, and one
  all-reduce sums the partial outputs (Megatron's g operator); backward has one all-reduce at the input
  of the column-parallel layer (Megatron's f).

The vocabulary is split too (Megatron §3, "parallelize the output embedding GEMM"): the head is
column-parallel over the vocabulary, so rank r computes the logits of its V/T tokens only, and the token
embedding is row-parallel over the same rows (a lookup in rank r's rows, zero elsewhere, summed over the
ranks), so a tied matrix stays one sharded matrix. In training the logits stay sharded and the
cross-entropy runs on the shards (`loss_parallel`, see `vocab_parallel_steps`): with m = maxᵥ zᵥ
all-reduced (max), log Σᵥ e^{zᵥ} = m + log Σ_r Σ_{v∈r} e^{zᵥ−m} needs one all-reduce of a (B, T) sum, and
the target's logit lives on one rank (an all-reduce of a (B, T) tensor, zero elsewhere) — the (B, T, V)
logits are never gathered, in forward or backward (Megatron: b·s instead of b·s·v numbers to move).
Outside training (validation, sampling) the head gathers the full logits, so inference code sees plain
tensors. Norms stay replicated (every rank computes them identically on the same batch).
All ranks of the tensor-parallel axis read the same batch: Lightning's `ModelParallelStrategy` hands the
sampler the data-parallel rank only.

The fused `qkv` projection holds [all q rows, all k rows, all v rows]; a contiguous split of its rows
would give rank 0 all the queries. Its rows are therefore reordered once, before sharding, to
[q₀ k₀ v₀ | q₁ k₁ v₁ | …] (chunk r of each), so that `ColwiseParallel`'s contiguous shard r is rank r's
heads. The sharded checkpoint keeps that order (a resume under the same degree reads it back as is);
`plain_qkv_rows` puts the rows back when the full model is gathered for export.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from minigpt.model.attention import CausalSelfAttention
from minigpt.model.config import ModelConfig
from minigpt.model.mlp import SwiGLU
from minigpt.model.transformer import Transformer
from minigpt.scale.grad_norm import clip_split_grad_norm
from minigpt.utils.errors import ConfigError


class TensorParallelStrategy(ModelParallelStrategy):
    """Lightning's `ModelParallelStrategy` on a (data_parallel × tensor_parallel) device mesh.

    `tensor_parallel_size=None` puts every process of the node on the tensor-parallel axis (a 1-D mesh in
    effect). A smaller T makes W/T groups of T processes: tensor parallelism inside each group, FSDP2
    across the groups on the data-parallel axis (the 2-D recipe of PyTorch's TP tutorial: `parallelize`
    on the tensor-parallel sub-mesh first, then `fully_shard` on the data-parallel one), each group
    reading its own part of the batch. This version runs on one node (see `check_model`).
    The splitting itself happens in `Stage.configure_model`.
    """

    def __init__(
        self, tensor_parallel_size: int | None = None, save_distributed_checkpoint: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=tensor_parallel_size or "auto",
            save_distributed_checkpoint=save_distributed_checkpoint,
            **kwargs,
        )

    def setup_environment(self) -> None:
        """Size the data-parallel axis to the processes the tensor-parallel axis leaves (known only now)."""
        if self._tensor_parallel_size != "auto":
            self._data_parallel_size = self.num_nodes * self.num_processes // int(self._tensor_parallel_size)
        super().setup_environment()

    def setup(self, trainer: Any) -> None:
        """Lightning's setup, then gradient clipping that understands a model of sharded and plain parameters.

        `torch.nn.utils.clip_grad_norm_` refuses a mix of `DTensor` (split layers) and plain tensors
        (the replicated embeddings, norms and head); `clip_grad_norm` computes the same norm by hand.
        """
        super().setup(trainer)
        plugin = self.precision_plugin

        def clip(optimizer: Any, clip_val: float) -> None:
            clip_grad_norm(plugin.main_params(optimizer), clip_val)

        plugin.clip_grad_by_norm = clip  # type: ignore[method-assign]

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """The stage's step with the cross-entropy on vocabulary-sharded logits (`vocab_parallel_steps`)."""
        with vocab_parallel_steps():
            return plain_loss(super().training_step(*args, **kwargs))

    def backward(self, closure_loss: Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> Tensor:
        """Backward through the sharded cross-entropy: it needs the same context as its forward."""
        with vocab_parallel_steps():
            return super().backward(closure_loss, optimizer, *args, **kwargs)


def vocab_parallel_steps() -> Any:
    """A context in which `F.cross_entropy` (so `minigpt.losses.lm.lm_loss`) reads logits sharded over the
    vocabulary: DTensor's `loss_parallel`, which computes the log-sum-exp from all-reduced maxima and sums
    of exponentials (see the module docstring) and returns a replicated loss."""
    from torch.distributed.tensor.parallel import loss_parallel

    return loss_parallel()


def plain_loss(output: Any) -> Any:
    """A step's output with a replicated `DTensor` loss made a plain tensor (differentiably), for Lightning."""
    if isinstance(output, DTensor):
        return output.full_tensor()
    if isinstance(output, dict) and isinstance(output.get("loss"), DTensor):
        return {**output, "loss": output["loss"].full_tensor()}
    return output


def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float) -> Tensor:
    """Scale the gradients so that their global 2-norm is at most `max_norm`; returns the norm before.

    A gradient sharded over the (1-D) mesh has its squares summed locally, then over the ranks (each holds
    different entries); a replicated one (plain, or a `Replicate` DTensor such as a row-parallel bias) is
    counted once, since every rank holds all of it (`clip_split_grad_norm`). On a 2-D mesh (tensor
    parallelism with FSDP2) see `clip_mesh_grad_norm`.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if any(isinstance(g, DTensor) and g.device_mesh.ndim > 1 for g in grads):
        return clip_mesh_grad_norm(grads, max_norm)
    split: list[Tensor] = []
    whole: list[Tensor] = []
    group = None
    for grad in grads:
        if isinstance(grad, DTensor) and any(placement.is_shard() for placement in grad.placements):
            split.append(grad.to_local())
            group = grad.device_mesh.get_group()
        else:
            whole.append(grad.to_local() if isinstance(grad, DTensor) else grad)
    return clip_split_grad_norm(split, whole, max_norm, group)


def clip_mesh_grad_norm(grads: list[Tensor], max_norm: float) -> Tensor:
    """`clip_grad_norm` for gradients on meshes of any dimension (2-D: data_parallel × tensor_parallel).

    A gradient's Σg² over all its entries is its local Σg² summed over the ranks of each mesh dimension on
    which it is sharded (ranks along a replicated dimension hold the same entries and count once). The
    gradients are grouped by (mesh, sharded dimensions) so that each group costs one all-reduce per
    sharded dimension; FSDP2 alone puts plain parameters (norms) on the 1-D data-parallel sub-mesh and
    split ones on the 2-D mesh, hence several groups.
    """
    sums: dict[tuple[Any, tuple[int, ...]], Tensor] = {}
    for grad in grads:
        if isinstance(grad, DTensor):
            # Not `is_shard()`: FSDP2 over an already vocabulary-split embedding shards it again along the same
            # dimension, a `_StridedShard` whose `is_shard()` is False; a gradient is never `Partial` here.
            dims = tuple(d for d, placement in enumerate(grad.placements) if not placement.is_replicate())
            key, local = (grad.device_mesh, dims), grad.to_local()
        else:
            key, local = (None, ()), grad
        sums[key] = sums.get(key, torch.zeros((), dtype=torch.float32)) + local.float().pow(2).sum().cpu()
    total = torch.zeros((), dtype=torch.float32)
    for (mesh, dims), square in sums.items():
        for dim in dims:
            torch.distributed.all_reduce(square, group=mesh.get_group(dim))
        total += square
    norm = total.sqrt()
    scale = float(max_norm / (norm + 1e-6))  # the epsilon torch.nn.utils.clip_grad_norm_ uses
    if scale < 1.0:
        for grad in grads:
            (grad.to_local() if isinstance(grad, DTensor) else grad).mul_(scale)
    return norm


def is_tensor_parallel(module: Any) -> bool:
    """Whether `module` (a LightningModule) runs under a device mesh whose tensor-parallel axis has > 1 rank."""
    mesh = getattr(module, "device_mesh", None)
    return mesh is not None and mesh["tensor_parallel"].size() > 1


def generates_collectively(module: Any) -> bool:
    """Whether every rank must run generation together: tensor parallelism alone (each forward is a
    collective of the split layers). With FSDP2 on a second mesh axis, generation calls submodules that
    FSDP2's root hooks never see, so such a model is gathered whole for sampling instead (`is_sharded`)."""
    return is_tensor_parallel(module) and module.device_mesh["data_parallel"].size() == 1


def check_model(config: ModelConfig, degree: int, nodes: int = 1) -> None:
    """Raise `ConfigError` unless a tensor-parallel degree `degree` can split `config`'s model evenly."""
    if nodes != 1:
        raise ConfigError(f"strategy=tensor_parallel runs on one node for now (trainer.num_nodes={nodes}).")
    if config.moe is not None:
        raise ConfigError("strategy=tensor_parallel splits dense MLPs only; an MoE model needs expert parallelism.")
    sizes = {"model.n_head": config.n_head, "model.n_kv_head": config.n_kv_head, "model.mlp_hidden": config.mlp_hidden}
    for name, size in sizes.items():
        if size % degree:
            raise ConfigError(
                f"tensor parallelism over {degree} processes (trainer.devices) must divide {name}={size}; "
                f"use a degree that divides n_head, n_kv_head and mlp_hidden."
            )


def check_before_launch(strategy: object, trainer_cfg: Any, config: ModelConfig) -> None:
    """`check_model` for `strategy=tensor_parallel` when `trainer.devices` is a number: before any process starts.

    The degree is `strategy.tensor_parallel_size` when set (it must divide the devices: the rest form the
    data-parallel axis), else all the devices.
    """
    devices = trainer_cfg.get("devices")
    if not isinstance(strategy, TensorParallelStrategy) or not isinstance(devices, int):
        return
    degree = strategy._tensor_parallel_size
    if degree == "auto":
        degree = devices
    elif not isinstance(degree, int) or degree < 1 or devices % degree:
        raise ConfigError(
            f"strategy.tensor_parallel_size={degree} must divide trainer.devices={devices}; "
            f"use a divisor of {devices} (the data-parallel axis gets the rest)."
        )
    check_model(config, degree, int(trainer_cfg.get("num_nodes", 1)))


def qkv_row_order(config: ModelConfig, degree: int) -> Tensor:
    """The row order [q₀ k₀ v₀ | q₁ k₁ v₁ | …] of the fused qkv weight: chunk r of each of q, k, v is rank r's."""
    q, kv = config.n_head * config.head_dim, config.n_kv_head * config.head_dim
    sections = torch.arange(q + 2 * kv).split([q, kv, kv])
    return torch.cat([torch.cat([section.chunk(degree)[r] for section in sections]) for r in range(degree)])


def parallelize(model: Transformer, mesh: Any) -> None:
    """Split every block's attention and MLP, and the vocabulary, over the 1-D device mesh `mesh` (its size is
    the degree)."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    degree = mesh.size()
    check_model(model.config, degree)
    order = qkv_row_order(model.config, degree)
    for block in model.blocks:
        attn = block.attn
        assert isinstance(attn, CausalSelfAttention)
        with torch.no_grad():  # rank r's heads become the r-th contiguous chunk of rows
            for param in attn.qkv.parameters():
                param.copy_(param[order])
        attn.n_head //= degree  # the view into heads in `forward` then sees this rank's heads only
        attn.n_kv_head //= degree
        up = ["gate", "up"] if isinstance(block.ffn, SwiGLU) else ["fc"]
        plan: dict[str, Any] = {"attn.qkv": ColwiseParallel(), "attn.proj": RowwiseParallel()}
        plan |= {f"ffn.{name}": ColwiseParallel() for name in up}
        plan["ffn.proj"] = RowwiseParallel()
        parallelize_module(block, mesh, plan)
    # Vocabulary parallel: embedding rows and head rows (= output features) split the same way.
    vocab_plan = {
        "tok_emb": RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate()),
        "lm_head": ColwiseParallel(output_layouts=Shard(-1), use_local_output=False),
    }
    parallelize_module(model, mesh, vocab_plan)
    if model.config.tie_embeddings:  # each style made its own parameter: tie them again (same Shard(0) rows)
        model.lm_head.weight = model.tok_emb.weight
    model.lm_head.register_forward_hook(_full_logits_outside_training)


def _full_logits_outside_training(head: nn.Module, inputs: Any, logits: DTensor) -> Tensor | DTensor:
    """Gather the vocabulary-sharded logits when the head does not train (validation, sampling)."""
    return logits if head.training else logits.full_tensor()


def plain_qkv_rows(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Undo `parallelize`'s row reordering in a full state dict gathered from the tensor-parallel `model`."""
    config: ModelConfig = model.config  # type: ignore[assignment]
    for name, module in model.named_modules():
        if isinstance(module, CausalSelfAttention) and module.n_head != config.n_head:
            order = qkv_row_order(config, config.n_head // module.n_head)
            for kind in ("weight", "bias"):
                key = f"{name}.qkv.{kind}"
                if key in state:
                    plain = torch.empty_like(state[key])
                    plain[order] = state[key]
                    state[key] = plain
    return state
