"""Muon (Jordan et al. 2024) for the hidden weight matrices, AdamW for everything else, as one optimizer.

Muon ("MomentUm Orthogonalized by Newton–Schulz", Keller Jordan, https://kellerjordan.github.io/posts/muon/)
replaces a matrix's momentum M by its nearest semi-orthogonal matrix U·Vᵀ (M = U·S·Vᵀ, its SVD): every
direction of the update gets the same size, so the rare directions that plain SGD-momentum and Adam
under-train are learned as fast as the dominant ones. U·Vᵀ is approximated by a few Newton–Schulz steps,
X ← a·X + (b·A + c·A²)·X with A = X·Xᵀ, which need only matmuls (`newton_schulz`).

Muon is defined for 2-D matrices that map hidden states to hidden states. The embedding (a lookup, not a
linear map of the input), the LM head (its output is a distribution, not a hidden state), and the norm
gains and biases (vectors) keep AdamW, as in the reference implementation (`MuonWithAuxAdam`) and nanochat.
`Transformer.param_groups(weight_decay, muon=True)` marks the hidden-matrix group with `"muon": True`; every
other group (and every group of a stage that builds its own, e.g. LoRA fine-tuning) is plain AdamW.

One optimizer rather than two so that Lightning's automatic optimisation, gradient clipping, the lr
scheduler (which scales each group's own initial lr) and checkpoints see a single `torch.optim.Optimizer`.
PyTorch ships `torch.optim.Muon` (2.9+) for the Muon half alone; its orthogonalisation always runs in
bfloat16, which is emulated and slow on CPUs without AVX-512 BF16. This one runs it in bfloat16 where the
hardware computes it (GPUs, CPUs with AVX-512 BF16: half the time of float32 at nano size) and in the
gradient's dtype elsewhere (`ns_dtype="auto"`, `newton_schulz_dtype`).
Orthogonalisation needs each whole matrix, so sharded parameters (FSDP2, tensor parallelism) are refused
by the stage (`Stage.param_groups`); plain tensors under DDP or ZeRO-1 work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from minigpt.scale.peak_flops import has_avx512_bf16

# The quintic Newton–Schulz coefficients of the reference implementation (and torch.optim.Muon): chosen to
# maximise the slope at 0, so that small singular values grow fast; they converge to ~[0.7, 1.2], not 1.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

NSDtype = Literal["auto", "float32", "bfloat16"]


@cache
def _cpu_has_bf16() -> bool:
    return has_avx512_bf16()


def newton_schulz_dtype(ns_dtype: NSDtype, grad: Tensor) -> torch.dtype:
    """The dtype the iteration runs in: `ns_dtype`, or for "auto" bfloat16 where it is computed natively.

    The iteration only needs the singular vectors and a rough σ ≈ 1, so bfloat16's 8-bit mantissa is enough
    (the reference implementation and `torch.optim.Muon` always use it). Native means a CUDA device or a CPU
    with AVX-512 BF16; elsewhere bfloat16 matmuls are emulated (~13× slower than float32 on this project's
    CPUs without it), so "auto" keeps the gradient's dtype there.
    """
    if ns_dtype != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[ns_dtype]
    native = grad.device.type == "cuda" or (grad.device.type == "cpu" and _cpu_has_bf16())
    return torch.bfloat16 if native else grad.dtype


def newton_schulz(
    g: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Approximately orthogonalise `g` (m, n): U·S'·Vᵀ with S' ≈ 1, where g = U·S·Vᵀ (Jordan et al. 2024).

    X₀ = g / ‖g‖_F puts every singular value in (0, 1]; each step X ← a·X + (b·A + c·A²)·X, A = X·Xᵀ, maps
    each singular value σ to a·σ + b·σ³ + c·σ⁵ and leaves U, V unchanged. Works on the wide orientation
    (m ≤ n), so that A is the smaller Gram matrix. Runs in `dtype` (default: g's) and returns g's dtype.
    """
    a, b, c = coefficients
    tall = g.size(0) > g.size(1)
    x = (g.T if tall else g).to(dtype or g.dtype)
    x = x / x.norm().clamp(min=1e-7)
    for _ in range(steps):
        gram = x @ x.T  # (m, m)
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)  # a·X + (b·A + c·A²)·X
    return (x.T if tall else x).to(g.dtype)


class MuonAdamW(Optimizer):
    """Muon on the parameter groups marked `"muon": True`, AdamW (decoupled weight decay) on the others.

    Args:
        params: parameter groups; a group's `muon` key (default False) picks its rule. A group's own `lr`
            and `weight_decay` override the defaults below: `lr`/`weight_decay` for AdamW groups,
            `muon_lr`/`muon_weight_decay` for Muon groups.
        lr: AdamW's learning rate (embeddings, head, gains, biases, and any unmarked group).
        muon_lr: Muon's learning rate, for an update whose spectral norm is ~1 (the reference's 0.02–0.05).
        momentum: Muon's momentum β; `nesterov` uses g + β·M (Nesterov) instead of M.
        ns_steps: Newton–Schulz iterations.
        ns_dtype: the iteration's dtype: "auto" (bfloat16 where native, `newton_schulz_dtype`), "float32"
            or "bfloat16".
        betas, eps: AdamW's.
        weight_decay: AdamW's decoupled decay, θ ← θ·(1 − lr·λ) (a group's own value wins).
        muon_weight_decay: the same decay for the Muon groups.

    Muon step for a matrix W (m × n) with gradient G (reference implementation, `muon_update`):
        M ← β·M + (1−β)·G;   U = NS(G + β·(M − G)) if nesterov else NS(M);   W ← W − η·√max(1, m/n)·U.
    The √max(1, m/n) factor gives tall matrices (e.g. the fused qkv projection) the same per-element update
    size as square ones.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        muon_lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_dtype: NSDtype = "auto",
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        muon_weight_decay: float = 0.0,
    ) -> None:
        if ns_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"optim.optimizer.ns_dtype={ns_dtype!r} is unknown; use 'auto', 'float32' or 'bfloat16'.")
        groups: list[dict[str, Any]] = [dict(g) if isinstance(g, dict) else {"params": [g]} for g in params]
        for group in groups:
            group.setdefault("muon", False)
            if group["muon"]:  # Muon's own lr and decay (its steps are ~20× AdamW's: 0.1 would be strong)
                group.setdefault("lr", muon_lr)
                group.setdefault("weight_decay", muon_weight_decay)
        defaults = dict(
            lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_dtype=ns_dtype, betas=tuple(betas),
            eps=eps, weight_decay=weight_decay,
        )  # fmt: skip
        super().__init__(groups, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                shapes = [tuple(p.shape) for p in group["params"] if p.dim() != 2]
                raise ValueError(f"Muon orthogonalises 2-D matrices only; its group holds shapes {shapes}.")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient (`closure` re-evaluates the loss, as Lightning does)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["muon"]:
                self._muon(group, params)
            else:
                self._adamw(group, params)
        return loss

    def _muon(self, group: dict[str, Any], params: list[Tensor]) -> None:
        lr, beta = group["lr"], group["momentum"]
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            grad = p.grad
            assert grad is not None  # `step` passes only parameters with a gradient
            buf.lerp_(grad, 1 - beta)  # M ← β·M + (1−β)·G
            update = grad.lerp(buf, beta) if group["nesterov"] else buf
            ortho = newton_schulz(
                update, group["ns_steps"], dtype=newton_schulz_dtype(group.get("ns_dtype", "auto"), update)
            )
            p.mul_(1 - lr * group["weight_decay"])
            p.add_(ortho, alpha=-lr * math.sqrt(max(1.0, p.size(0) / p.size(1))))

    def _adamw(self, group: dict[str, Any], params: list[Tensor]) -> None:
        """AdamW (Loshchilov & Hutter 2019, Algorithm 2), the same arithmetic as `torch.optim.AdamW`."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            m, v = state["exp_avg"], state["exp_avg_sq"]
            grad = p.grad
            assert grad is not None
            m.lerp_(grad, 1 - beta1)  # m ← β₁m + (1−β₁)g
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v ← β₂v + (1−β₂)g²
            bias1, bias2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
            p.mul_(1 - lr * group["weight_decay"])
            p.addcdiv_(m, (v.sqrt() / math.sqrt(bias2)).add_(eps), value=-lr / bias1)
