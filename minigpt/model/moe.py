"""Mixture-of-experts feed-forward layer: a router sends each token to a few expert MLPs.

Routers (`model.moe.router`):
* `topk` — token choice: each token takes its k most probable experts (Shazeer et al. 2017), gates
  renormalised to sum to 1 or not; optional capacity per expert.
* `switch` — top-1 token choice with capacity ⌈c·N/E⌉; tokens over capacity are dropped and pass
  through the block's residual unchanged (Fedus et al. 2021, §2.2).
* `expert_choice` — each expert takes its ⌈c·N/E⌉ most probable tokens (Zhou et al. 2022): perfectly
  balanced by construction. Caveat for a causal LM: a token's experts depend on the other tokens in the
  batch, later ones included, so routing at generation time (few tokens) differs from training.

Dispatch is vectorised: routing produces an (E, capacity) table of token ids and gates; tokens are
gathered into a padded (E, capacity, C) buffer, all experts run as one batched matmul, and outputs are
scattered back with `index_add_`. No Python loop over tokens or experts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.losses.moe import load_balancing_loss, router_z_loss
from minigpt.model.config import ModelConfig
from minigpt.model.mlp import MLP, SwiGLU, build_mlp, pointwise_activation
from minigpt.utils.errors import ConfigError


class Routing(NamedTuple):
    """Where the tokens go. Slot (e, j) of expert e holds token `slot_token[e, j]` with weight
    `slot_gate[e, j]`; an empty slot holds the id N (one past the last token) and gate 0."""

    slot_token: Tensor  # (E, capacity) int64
    slot_gate: Tensor  # (E, capacity) float32, differentiable w.r.t. the router
    chosen: Tensor | None  # (N, k) experts picked by each token (token choice); None for expert choice
    dropped: Tensor  # scalar: fraction of assignments that found no slot / tokens no expert picked


def route_top_k(probs: Tensor, k: int, renormalize: bool, capacity_factor: float | None) -> Routing:
    """Token choice: each token goes to its top-k experts, at most ⌈c·N·k/E⌉ tokens per expert.

    When an expert is over capacity, first choices win over second choices, and earlier tokens over later
    ones (GShard, Lepikhin et al. 2020, Alg. 1): assignments are ranked choice-major before counting.
    `capacity_factor=None` never drops (capacity = the busiest expert's load).

    Args:
        probs: (N, E) router softmax.
    """
    n_tokens, n_experts = probs.shape
    gate, chosen = probs.topk(k, dim=-1)  # (N, k)
    if renormalize:
        gate = gate / gate.sum(dim=-1, keepdim=True)
    # Flatten (token, choice) pairs choice-major: all first choices, then all second choices, ...
    expert_flat = chosen.t().reshape(-1)  # (k·N,)
    token_flat = torch.arange(n_tokens, device=probs.device).repeat(k)
    gate_flat = gate.t().reshape(-1)
    # A stable sort groups the pairs by expert and keeps their priority order within each expert.
    sorted_expert, order = torch.sort(expert_flat, stable=True)
    counts = torch.bincount(expert_flat, minlength=n_experts)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(expert_flat.numel(), device=probs.device) - starts[sorted_expert]  # place in queue
    if capacity_factor is None:
        capacity = int(counts.max())
    else:
        capacity = math.ceil(capacity_factor * n_tokens * k / n_experts)
    keep = rank < capacity
    slot = sorted_expert[keep] * capacity + rank[keep]
    slot_token = torch.full((n_experts * capacity,), n_tokens, dtype=torch.long, device=probs.device)
    slot_token[slot] = token_flat[order][keep]
    slot_gate = gate_flat.new_zeros(n_experts * capacity).index_put((slot,), gate_flat[order][keep])
    dropped = 1.0 - keep.float().mean()
    return Routing(slot_token.view(n_experts, capacity), slot_gate.view(n_experts, capacity), chosen, dropped)


def route_expert_choice(probs: Tensor, capacity_factor: float) -> Routing:
    """Expert choice: expert e takes the ⌈c·N/E⌉ tokens with the highest probability of e (Zhou et al.
    2022, eq. 1–2); gates are those probabilities. A token may get 0..E experts; with 0 it is dropped.

    Args:
        probs: (N, E) router softmax over experts (the paper's token-to-expert affinity S).
    """
    n_tokens, n_experts = probs.shape
    capacity = min(math.ceil(capacity_factor * n_tokens / n_experts), n_tokens)
    slot_gate, slot_token = probs.t().topk(capacity, dim=-1)  # (E, capacity)
    picked = torch.zeros(n_tokens, dtype=torch.bool, device=probs.device)
    picked[slot_token.flatten()] = True
    return Routing(slot_token, slot_gate, None, 1.0 - picked.float().mean())


class ExpertMLPs(nn.Module):
    """E expert MLPs with stacked weights, so that all experts run as one `torch.baddbmm`.

    GELU (or ReLU²) experts: out = act(x·W_in + b_in)·W_out + b_out. SwiGLU experts: W_in holds [gate | up]
    side by side, out = (silu(x·W_gate) ⊙ x·W_up)·W_out (Shazeer 2020, eq. 6). Weights are stored
    (E, in, out) for `x @ W`. Biases are stored flat, (E·out,), so that the optimizer's "decay only
    tensors with ≥ 2 dims" rule keeps them out of weight decay like every other bias.
    """

    def __init__(self, num_experts: int, config: ModelConfig, hidden: int) -> None:
        super().__init__()
        n_embd, self.hidden, self.num_experts = config.n_embd, hidden, num_experts
        self.swiglu = config.activation == "swiglu"
        self.act = pointwise_activation(config.activation)
        width = 2 * hidden if self.swiglu else hidden
        # Same init as the dense MLP: N(0, σ), output projection σ/√(2·n_layer) (GPT-2 §2.3), or 0 (zero_init_proj).
        std = config.init_std
        self.w_in = nn.Parameter(torch.randn(num_experts, n_embd, width) * std)
        out_std = 0.0 if config.zero_init_proj else std / math.sqrt(2 * config.n_layer)
        self.w_out = nn.Parameter(torch.randn(num_experts, hidden, n_embd) * out_std)
        self.b_in = nn.Parameter(torch.zeros(num_experts * width)) if config.bias else None
        self.b_out = nn.Parameter(torch.zeros(num_experts * n_embd)) if config.bias else None

    @staticmethod
    def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Per-expert x @ W (+ b): (E, n, a) × (E, a, b) → (E, n, b)."""
        if bias is None:
            return torch.bmm(x, weight)
        return torch.baddbmm(bias.view(weight.shape[0], 1, weight.shape[2]), x, weight)

    def forward(self, x: Tensor) -> Tensor:
        """(E, capacity, C) → (E, capacity, C): expert e applied to row e."""
        h = self._linear(x, self.w_in, self.b_in)  # (E, cap, H or 2H)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = self.act(h)
        return self._linear(h, self.w_out, self.b_out)  # (E, cap, C)

    @torch.no_grad()
    def copy_dense_(self, mlp: nn.Module) -> None:
        """Make every expert a copy of a dense `MLP` / `SwiGLU` (sparse upcycling)."""
        if isinstance(mlp, SwiGLU) and self.swiglu:
            w_in = torch.cat([mlp.gate.weight.t(), mlp.up.weight.t()], dim=-1)
            b_in = torch.cat([mlp.gate.bias, mlp.up.bias]) if mlp.gate.bias is not None else None
        elif isinstance(mlp, MLP) and not self.swiglu:
            w_in, b_in = mlp.fc.weight.t(), mlp.fc.bias
        else:
            kind = "SwiGLU" if self.swiglu else "GELU"
            raise TypeError(f"copy_dense_: {kind} experts cannot copy a {type(mlp).__name__}.")
        self.w_in.copy_(w_in.expand_as(self.w_in))
        self.w_out.copy_(mlp.proj.weight.t().expand_as(self.w_out))
        if self.b_in is not None and self.b_out is not None and b_in is not None:
            self.b_in.copy_(b_in.repeat(self.num_experts))
            self.b_out.copy_(mlp.proj.bias.repeat(self.num_experts))

    @torch.no_grad()
    def copy_experts_(self, source: ExpertMLPs, index: Tensor) -> None:
        """Load experts `index` of `source` into this (smaller) module, in that order (expert pruning)."""
        self.w_in.copy_(source.w_in[index])
        self.w_out.copy_(source.w_out[index])
        if self.b_in is not None and self.b_out is not None and source.b_in is not None and source.b_out is not None:
            self.b_in.copy_(source.b_in.view(source.num_experts, -1)[index].flatten())
            self.b_out.copy_(source.b_out.view(source.num_experts, -1)[index].flatten())


def combine(x: Tensor, routing: Routing, experts: ExpertMLPs) -> Tensor:
    """Σ over a token's slots of gate · expert(token): gather → batched experts → weighted scatter-add.

    x: (N, C). Empty slots point at an extra zero row N, so they gather zeros and add into a row that is
    thrown away. Returns (N, C) in float32 (the gates' dtype); dropped tokens get 0.
    """
    n_tokens, n_embd = x.shape
    x_pad = torch.cat([x, x.new_zeros(1, n_embd)])  # (N+1, C)
    expert_in = x_pad[routing.slot_token]  # (E, cap, C)
    expert_out = experts(expert_in) * routing.slot_gate.unsqueeze(-1)  # (E, cap, C)
    out = expert_out.new_zeros(n_tokens + 1, n_embd)
    out.index_add_(0, routing.slot_token.flatten(), expert_out.flatten(0, 1))
    return out[:n_tokens]


class MoELayer(nn.Module):
    """Router + experts (+ shared experts): a drop-in feed-forward network returning `(out, aux)`.

    `aux` holds `aux_loss` (aux_loss_coef · balancing + z_loss_coef · z-loss, with gradient) and `moe`,
    detached router statistics of this layer: `layer`, `load` (E,) — the share of routing assignments
    each expert receives before capacity (token choice) or its share of the total gate weight (expert
    choice) —, `dropped`, `entropy` (mean router entropy, log E when uniform), `balance_loss`, `z_loss`.
    """

    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        assert config.moe is not None
        self.moe, self.layer_idx = config.moe, layer_idx
        hidden = self.moe.expert_hidden or config.mlp_hidden
        self.router = nn.Linear(config.n_embd, self.moe.num_experts, bias=False)
        self.experts = ExpertMLPs(self.moe.num_experts, config, hidden)
        self.shared = None
        if self.moe.num_shared_experts:
            # k always-on experts of width h are one MLP of width k·h (DeepSeekMoE, Dai et al. 2024, §3.2).
            width = self.moe.num_shared_experts * hidden
            self.shared = build_mlp(dataclasses.replace(config, mlp_hidden=width, moe=None))

    def inactive_params(self) -> float:
        """Expert parameters one token does *not* pass through, on average (for FLOPs per token).

        A token visits `top_k` of E experts (token choice) or, on average, `capacity_factor` of them
        (expert choice), so only that fraction of the expert weights does work for it.
        """
        per_token = self._capacity_factor() if self.moe.router == "expert_choice" else self.moe.top_k
        total = sum(p.numel() for p in self.experts.parameters())
        return total * (1.0 - per_token / self.moe.num_experts)

    def _capacity_factor(self) -> float:
        """`moe.capacity_factor`, which `MoEConfig.validate` requires for every router but `topk`."""
        if self.moe.capacity_factor is None:
            raise ConfigError(f"model.moe.router={self.moe.router} needs model.moe.capacity_factor (e.g. 1.25).")
        return self.moe.capacity_factor

    def route(self, x: Tensor) -> tuple[Tensor, Tensor, Routing]:
        """Router logits and probabilities (N, E), in float32, and the routing of tokens x (N, C)."""
        moe = self.moe
        if self.training and moe.jitter_noise > 0:
            # Multiplicative jitter on the router input (Fedus et al. 2021, §2.4) explores other experts.
            noise = torch.empty_like(x).uniform_(1.0 - moe.jitter_noise, 1.0 + moe.jitter_noise)
            x = x * noise
        # The softmax runs in float32 even under bf16 autocast ("selective precision", Fedus et al. §2.4).
        logits = self.router(x).float()
        probs = logits.softmax(dim=-1)
        if moe.router == "expert_choice":
            routing = route_expert_choice(probs, self._capacity_factor())
        else:  # topk, and switch = top-1 with a capacity (validated in MoEConfig)
            routing = route_top_k(probs, moe.top_k, moe.renormalize, moe.capacity_factor)
        return logits, probs, routing

    def dispatch(self, x: Tensor, routing: Routing) -> Tensor:
        """Σ gate · expert(token) for the tokens x (N, C): `combine` on this layer's experts.

        Expert parallelism (`minigpt.scale.expert_parallel`) overrides it to run each expert on the rank
        that holds it.
        """
        return combine(x, routing, self.experts)

    def balancing_loss(self, probs: Tensor, chosen: Tensor) -> Tensor:
        """The Switch balancing loss of this batch's routing (token choice); expert parallelism overrides it
        to count the global batch of all ranks."""
        return load_balancing_loss(probs, chosen)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """(B, T, C) → ((B, T, C), aux)."""
        B, T, C = x.shape
        flat = x.reshape(B * T, C)
        logits, probs, routing = self.route(flat)
        out = self.dispatch(flat, routing).to(x.dtype)
        if self.shared is not None:
            out = out + self.shared(flat)
        z_loss = router_z_loss(logits)
        aux_loss = self.moe.z_loss_coef * z_loss
        balance = None
        if routing.chosen is not None:
            balance = self.balancing_loss(probs, routing.chosen)
            aux_loss = aux_loss + self.moe.aux_loss_coef * balance
        return out.view(B, T, C), {"aux_loss": aux_loss, "moe": self._stats(probs, routing, balance, z_loss)}

    @torch.no_grad()
    def _stats(self, probs: Tensor, routing: Routing, balance: Tensor | None, z_loss: Tensor) -> dict[str, Any]:
        """Detached per-layer router statistics (see the class docstring)."""
        n_experts = probs.shape[-1]
        if routing.chosen is not None:
            load = torch.bincount(routing.chosen.flatten(), minlength=n_experts).float()
        else:
            load = routing.slot_gate.sum(dim=-1)
        entropy = -(probs * probs.clamp_min(1e-9).log()).sum(dim=-1).mean()
        return {
            "layer": self.layer_idx,
            "load": load / load.sum(),
            "dropped": routing.dropped.detach(),
            "entropy": entropy,
            "balance_loss": balance.detach() if balance is not None else None,
            "z_loss": z_loss.detach(),
        }


def is_moe_layer(config: ModelConfig, layer_idx: int) -> bool:
    """Whether block `layer_idx` holds an MoE layer: every n-th block, i.e. layers n-1, 2n-1, …"""
    return config.moe is not None and (layer_idx + 1) % config.moe.every_n_layers == 0


def build_moe_layer(config: ModelConfig, layer_idx: int) -> MoELayer | None:
    """The MoE feed-forward network of block `layer_idx`, or `None` where the block stays dense."""
    return MoELayer(config, layer_idx) if is_moe_layer(config, layer_idx) else None


def moe_metrics(aux: dict[str, Any], prefix: str = "train") -> dict[str, float]:
    """Flatten the per-layer router statistics of `aux["moe"]` into named scalars for a logger.

    Names: `{prefix}/moe/aux_loss` (the weighted sum added to the loss), and per MoE layer L
    `{prefix}/moe/layer{L}/{entropy,dropped,max_load,balance_loss,z_loss}` and
    `{prefix}/moe/layer{L}/load/expert{e}` (the heatmap of `minigpt.evaluation.moe_plots` reads these).
    `max_load` is E · the largest expert share: 1 when balanced, E when one expert takes everything.
    Empty for a dense model.
    """
    layers = aux.get("moe") or []
    if not layers:
        return {}
    metrics = {f"{prefix}/moe/aux_loss": sum(loss.detach().item() for loss in aux["aux_loss"])}
    for stats in layers:
        base = f"{prefix}/moe/layer{stats['layer']}"
        load = stats["load"]
        metrics[f"{base}/max_load"] = float(load.max() * load.numel())
        for name in ("entropy", "dropped", "balance_loss", "z_loss"):
            if stats[name] is not None:
                metrics[f"{base}/{name}"] = float(stats[name])
        metrics.update({f"{base}/load/expert{e}": share for e, share in enumerate(load.tolist())})
    return metrics
