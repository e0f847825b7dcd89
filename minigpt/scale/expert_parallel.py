"""Expert parallelism for mixture-of-experts models (GShard, Lepikhin et al. 2020, §2.3; Switch, Fedus et al.
2021, §2.2 and Fig. 7): `strategy=expert_parallel`.

Each of R ranks reads its own batch (data parallelism) and holds E/R of each MoE layer's experts: rank r
owns experts [r·E/R, (r+1)·E/R). Everything else (embeddings, attention, routers, norms, shared experts,
head) is replicated, and its gradients are averaged over the ranks as in DDP. One MoE layer then runs:

1. route locally: every rank's router scores its own tokens against all E experts;
2. dispatch: tokens travel to the ranks that own their experts with one all-to-all (split sizes are
   exchanged first, with a small all-to-all of counts, since every rank sends a different number);
3. the owner runs its experts on the tokens from all ranks at once (one batched matmul);
4. combine: the outputs travel back with the reverse all-to-all and are weighted by the gates locally.

Gradients. The all-to-all is a permutation of rows across ranks; its transpose (backward) is the
all-to-all with send and receive sizes swapped (`_AllToAll`), so each token's gradient returns to the
expert that used it. Rank r's backward differentiates its own loss L_r; the run minimises the global
loss L = (1/R) Σ_r L_r (the mean over the global batch, as a single process would see it). DDP gives the
replicated weights (1/R) Σ_r ∂L_r/∂θ = ∂L/∂θ. An expert's owner, however, receives the gradients of the
losses of *all* ranks whose tokens it served: Σ_r ∂L_r/∂W_e, R times ∂L/∂W_e. A hook divides the
expert gradients by R (`_scale_grad`), and expert gradients are otherwise left local: nobody else holds
that expert.

Auxiliary losses over the global batch. The Switch balancing loss E · Σᵢ fᵢ · Pᵢ is a product of two
batch means, so the mean of the ranks' losses is not the global batch's loss. Each rank therefore
all-reduces the per-expert assignment counts (fᵢ, no gradient) and the summed router probabilities (Pᵢ)
before the product (`ExpertParallelMoELayer.balancing_loss`), and every rank gets the same, global loss.
The router z-loss is a mean over tokens of a per-token term: with equal batches per rank the mean of the
ranks' z-losses is already the global one, so it needs no communication.

Limits. Capacity (`model.moe.capacity_factor`) is counted per rank, as GShard's groups do, so with a
capacity the dropped tokens differ from a single process's; `expert_choice` routing (each expert picks
its tokens from the whole batch) is refused. Checkpoints hold every expert: the slices are gathered on
save and cut again on resume, so a checkpoint and the exported model folder are those of a plain run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx
from torch.nn.parallel import DistributedDataParallel

from minigpt.losses.moe import balancing_loss_from
from minigpt.model.config import ModelConfig
from minigpt.model.moe import ExpertMLPs, MoELayer, Routing
from minigpt.model.transformer import Transformer
from minigpt.scale.grad_norm import clip_split_grad_norm
from minigpt.utils.errors import ConfigError


class _AllToAll(torch.autograd.Function):
    """`dist.all_to_all_single` with a backward: rows `send_sizes[q]` of the input go to rank q.

    Forward is a permutation of rows across the ranks, so its gradient is the inverse permutation: the same
    collective with the send and receive sizes swapped. (`torch.distributed.nn.functional.all_to_all_single`
    does the same and is deprecated; this is its ten lines, without the deprecation.)
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, send_sizes: list[int], recv_sizes: list[int], group: Any) -> Tensor:
        """(Σ send_sizes, C) → (Σ recv_sizes, C)."""
        ctx.sizes, ctx.group = (send_sizes, recv_sizes), group  # type: ignore[attr-defined]
        out = x.new_empty(sum(recv_sizes), *x.shape[1:])
        dist.all_to_all_single(out, x.contiguous(), recv_sizes, send_sizes, group=group)
        return out

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        """The transpose: gradients travel back along the rows' way in."""
        send_sizes, recv_sizes = ctx.sizes  # type: ignore[attr-defined]
        return _AllToAll.apply(grad, recv_sizes, send_sizes, ctx.group), None, None, None  # type: ignore[attr-defined]


def all_to_all(x: Tensor, send_sizes: list[int], recv_sizes: list[int], group: Any) -> Tensor:
    """Differentiable all-to-all of the rows of `x` (see `_AllToAll`)."""
    out: Tensor = _AllToAll.apply(x, send_sizes, recv_sizes, group)
    return out


def _rank_within_group(group_of_row: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """For rows labelled with a group id: each row's place in its group (in row order) and the group sizes.

    A stable sort keeps the rows' order within a group, as in `minigpt.model.moe.route_top_k`.
    """
    counts = torch.bincount(group_of_row, minlength=num_groups)
    sorted_group, order = torch.sort(group_of_row, stable=True)
    place = torch.empty_like(group_of_row)
    place[order] = (
        torch.arange(group_of_row.numel(), device=group_of_row.device)
        - (torch.cumsum(counts, 0) - counts)[sorted_group]
    )
    return place, counts


def _scale_grad(param: nn.Parameter, factor: float) -> None:
    """Multiply `param`'s gradient by `factor` as it is accumulated (see the module docstring)."""
    param.register_hook(lambda grad: grad * factor)


class ExpertParallelMoELayer(MoELayer):
    """An `MoELayer` that holds experts [first, first + E/R) of its layer and sends tokens to the others' ranks.

    Built from a full layer by `from_layer`, which keeps its router and shared experts (replicated) and
    copies this rank's slice of its experts. Parameter names are those of `MoELayer`, so a gathered state
    dict loads into a plain model.
    """

    group: Any
    world: int
    first: int

    @classmethod
    def from_layer(
        cls, layer: MoELayer, config: ModelConfig, rank: int, world: int, group: Any
    ) -> ExpertParallelMoELayer:
        """This rank's share of `layer` (every other part of `layer` is reused as is)."""
        local = cls.__new__(cls)
        nn.Module.__init__(local)
        local.moe, local.layer_idx = layer.moe, layer.layer_idx
        local.router, local.shared = layer.router, layer.shared
        per_rank = layer.moe.num_experts // world
        local.group, local.world, local.first = group, world, rank * per_rank
        with torch.random.fork_rng(devices=[]):  # ExpertMLPs draws an init that is overwritten at once
            local.experts = ExpertMLPs(per_rank, config, layer.experts.hidden)
        local.experts.copy_experts_(layer.experts, torch.arange(local.first, local.first + per_rank))
        for param in local.experts.parameters():
            _scale_grad(param, 1.0 / world)
        return local

    def dispatch(self, x: Tensor, routing: Routing) -> Tensor:
        """Σ gate · expert(token) over a token's experts, each run on the rank that owns it. x: (N, C)."""
        n_tokens, n_embd = x.shape
        per_rank = self.experts.num_experts
        # What this rank sends: its filled slots, expert-major (slots fill from the front of each row).
        filled = routing.slot_token < n_tokens  # (E, cap)
        token = routing.slot_token[filled]  # (S,) in the order of experts, so of their owners
        per_expert = filled.sum(dim=1)  # (E,)
        # Every rank tells every other how many rows it sends to each of the other's experts.
        recv_counts = torch.empty_like(per_expert)
        dist.all_to_all_single(recv_counts, per_expert, group=self.group)
        recv_counts = recv_counts.view(self.world, per_rank)  # (R source ranks, E/R local experts)
        send_sizes = per_expert.view(self.world, per_rank).sum(dim=1).tolist()
        recv_sizes = recv_counts.sum(dim=1).tolist()
        received = all_to_all(x[token], send_sizes, recv_sizes, self.group)  # (Σ recv, C): source, expert, queue
        # Pad the rows into one (E/R, capacity, C) buffer: expert j's rows from all sources, in source order.
        expert_of_row = (
            torch.arange(per_rank, device=x.device).repeat(self.world).repeat_interleave(recv_counts.flatten())
        )
        place, load = _rank_within_group(expert_of_row, per_rank)
        capacity = int(load.max()) if load.numel() else 0
        slot = expert_of_row * capacity + place
        buffer = received.new_zeros(per_rank * capacity, n_embd).index_copy(0, slot, received)
        out_rows = self.experts(buffer.view(per_rank, capacity, n_embd)).flatten(0, 1)[slot]  # (Σ recv, C)
        returned = all_to_all(out_rows, recv_sizes, send_sizes, self.group)  # (S,) in the order sent
        weighted = returned * routing.slot_gate[filled].unsqueeze(-1)
        return weighted.new_zeros(n_tokens, n_embd).index_add_(0, token, weighted)

    def balancing_loss(self, probs: Tensor, chosen: Tensor) -> Tensor:
        """E · Σᵢ fᵢ · Pᵢ over the global batch: counts and probability sums are all-reduced before the product.

        Pᵢ's all-reduce has no backward: a global sum S = Σ_r S_r is written S_r·R + (S − S_r·R) with the
        bracket detached. Its value is S, and rank r's gradient is R·∂S_r, which DDP's mean over the ranks
        turns into Σ_r ∂S_r = ∂S — the single-process gradient — with no collective inside backward.
        """
        n_experts = probs.shape[-1]
        counts = torch.bincount(chosen.flatten(), minlength=n_experts).to(probs.dtype)
        prob_sum = probs.sum(dim=0)
        totals = torch.cat([counts, prob_sum.detach(), probs.new_tensor([chosen.numel(), probs.shape[0]])])
        dist.all_reduce(totals, group=self.group)
        counts_all, prob_all, (assignments, tokens) = totals[:n_experts], totals[n_experts:-2], totals[-2:]
        local = prob_sum * self.world
        mean_prob = (local + (prob_all - local).detach()) / tokens  # value: global Pᵢ; gradient: R·∂(local)
        return balancing_loss_from(counts_all / assignments, mean_prob)

    def inactive_params(self) -> float:
        """Expert parameters one token does not pass through, counted against this rank's parameters.

        `Transformer.flops_per_token` subtracts this from the parameters the rank holds (E/R experts per layer),
        while a token still visits k of all E experts: local − R·local·k/E leaves the full layer's active k/E.
        """
        local = sum(p.numel() for p in self.experts.parameters())
        return local - local * self.world * self.moe.top_k / self.moe.num_experts


def moe_layers(model: nn.Module) -> list[tuple[str, MoELayer]]:
    """The (name, layer) pairs of `model`'s MoE layers."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, MoELayer)]


def is_expert_parallel(model: nn.Module) -> bool:
    """Whether `model`'s experts are split over ranks (`split_experts`)."""
    return any(isinstance(layer, ExpertParallelMoELayer) for _, layer in moe_layers(model))


def split_experts(model: Transformer, rank: int, world: int, group: Any) -> None:
    """Keep only this rank's slice of every MoE layer's experts (`ExpertParallelMoELayer`), in place."""
    check_model(model.config, world)
    for block in model.blocks:
        if isinstance(block.ffn, MoELayer):
            block.ffn = ExpertParallelMoELayer.from_layer(block.ffn, model.config, rank, world, group)


def check_model(config: ModelConfig, world: int) -> None:
    """Raise `ConfigError` unless `world` processes can split `config`'s experts evenly."""
    if config.moe is None:
        raise ConfigError(
            "strategy=expert_parallel needs a mixture-of-experts model; use e.g. model=moe_8x, or strategy=ddp."
        )
    experts = config.moe.num_experts
    if world > experts:
        raise ConfigError(
            f"strategy=expert_parallel over {world} processes has more ranks than model.moe.num_experts={experts}; "
            f"use at most {experts} processes (trainer.devices × trainer.num_nodes)."
        )
    if experts % world:
        raise ConfigError(
            f"strategy=expert_parallel over {world} processes must divide model.moe.num_experts={experts}; "
            "use a process count (trainer.devices × trainer.num_nodes) that divides it."
        )
    if config.moe.router == "expert_choice":
        raise ConfigError(
            "strategy=expert_parallel routes by token choice only; set model.moe.router=topk or switch "
            "(expert choice picks tokens from the whole batch)."
        )


def check_before_launch(strategy: object, trainer_cfg: Any, config: ModelConfig) -> None:
    """`check_model` for `strategy=expert_parallel`, before any process starts (any model for other strategies)."""
    if not isinstance(strategy, ExpertParallelStrategy):
        return
    devices = trainer_cfg.get("devices")
    world = devices * int(trainer_cfg.get("num_nodes", 1)) if isinstance(devices, int) else 1
    check_model(config, world)


def _expert_names(module: nn.Module) -> list[str]:
    """Names of `module`'s expert parameters (in its `state_dict`)."""
    return [
        f"{layer_name}.experts.{name}"
        for layer_name, layer in moe_layers(module)
        for name, _ in layer.experts.named_parameters()
    ]


def gather_rows(tensor: Tensor, group: Any = None) -> Tensor:
    """The full tensor from every rank's slice of its rows (rank order); a collective over `group`."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, tensor.contiguous(), group=group)
    return torch.cat(parts)


class ExpertParallelStrategy(DDPStrategy):
    """DDP over all processes for the replicated weights, experts split over the same processes.

    `setup` cuts the experts (after a resumed checkpoint has loaded the full model into every rank) and
    tells DDP to leave the expert parameters alone; checkpoints gather the experts and their optimizer
    state into full tensors and `load_optimizer_state_dict` cuts them again.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(find_unused_parameters=False, **kwargs)
        self.expert_names: list[str] = []
        self.group: Any = None

    def setup(self, trainer: Any) -> None:
        """Split the experts, then DDP's setup (which wraps the module and builds the optimizer)."""
        module = self.lightning_module
        assert module is not None
        self.group = dist.new_group(list(range(self.world_size)))  # its own group: DDP's all-reduces interleave freely
        model = module.model
        assert isinstance(model, Transformer)
        split_experts(model, self.global_rank, self.world_size, self.group)
        self.expert_names = _expert_names(module)
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, self.expert_names)
        super().setup(trainer)
        plugin = self.precision_plugin

        def clip(optimizer: Any, clip_val: float) -> None:
            self.clip_grad_norm(list(plugin.main_params(optimizer)), clip_val)

        plugin.clip_grad_by_norm = clip  # type: ignore[method-assign]

    def _expert_ids(self) -> set[int]:
        """The `id`s of this rank's expert parameters."""
        module = self.lightning_module
        assert module is not None
        return {id(p) for name, p in module.named_parameters() if name in self.expert_names}

    def clip_grad_norm(self, parameters: Sequence[Tensor], max_norm: float) -> Tensor:
        """Clip by the norm of all gradients: every expert's (summed over the ranks) and the replicated ones."""
        experts = self._expert_ids()
        grads = [(id(p) in experts, p.grad) for p in parameters if p.grad is not None]
        return clip_split_grad_norm(
            [g for split, g in grads if split], [g for split, g in grads if not split], max_norm, self.group
        )

    def _cut(self, tensor: Tensor) -> Tensor:
        """This rank's slice (dim 0) of a full tensor."""
        return tensor.chunk(self.world_size)[self.global_rank].clone()

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The module's state with every expert gathered: a collective, the checkpoint of a plain run."""
        state = super().lightning_module_state_dict()
        for name in self.expert_names:
            state[name] = gather_rows(state[name], self.group)
        return state

    def _expert_param_ids(self, optimizer: Any) -> dict[int, bool]:
        """For each index of `optimizer.state_dict()`'s parameters: whether it is an expert parameter."""
        experts = self._expert_ids()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        return {index: id(p) in experts for index, p in enumerate(params)}

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        """The optimizer state with the experts' moments gathered (a collective)."""
        state: dict[str, Any] = dict(super().optimizer_state(optimizer))
        inner = getattr(optimizer, "_optimizer", optimizer)
        for index, is_expert in self._expert_param_ids(inner).items():
            if is_expert and index in state["state"]:
                entry = state["state"][index]
                state["state"][index] = {k: gather_rows(v, self.group) if v.dim() else v for k, v in entry.items()}
        return state

    def load_optimizer_state_dict(self, checkpoint: Any) -> None:
        """Cut the experts' moments of a gathered checkpoint to this rank's slice, then load."""
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"], strict=True):
            inner = getattr(optimizer, "_optimizer", optimizer)
            for index, is_expert in self._expert_param_ids(inner).items():
                if is_expert and index in state["state"]:
                    entry = state["state"][index]
                    state["state"][index] = {k: self._cut(v) if v.dim() else v for k, v in entry.items()}
        super().load_optimizer_state_dict(checkpoint)


def gather_expert_parallel_model(model: Transformer) -> Transformer | None:
    """A plain copy of an expert-parallel model with all experts on rank 0; `None` elsewhere. A collective."""
    state = model.state_dict()
    for name in _expert_names(model):
        state[name] = gather_rows(state[name])
    if dist.get_rank() != 0:
        return None
    plain = Transformer(model.config)
    plain.load_state_dict(state)
    return plain
