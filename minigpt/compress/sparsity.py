"""Unstructured pruning: which weights to zero, by magnitude or by Wanda's score, in free or N:M patterns.

Magnitude pruning (Han et al. 2015) removes the weights of smallest |W_ij|, compared across the whole layer.
Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs", eq. 1) scores each weight by
its size times the size of the input it multiplies,

    S_ij = |W_ij| · ‖X_j‖₂          (‖X_j‖₂ over every calibration token of input channel j)

and compares weights within each output row (§3, "comparison group"): a small weight on a channel that
carries large activations (the outlier features of Dettmers et al. 2022) matters more than a larger
weight on a quiet channel, which magnitude alone cannot see. No retraining and no weight update.

N:M sparsity keeps the N highest scores of every M consecutive weights of a row (2:4: exactly half);
NVIDIA's sparse tensor cores multiply such matrices at up to twice the dense rate (Mishra et al. 2021).
On a CPU no kernel uses the pattern: the masks are exact, the speed-up needs a GPU
(`torch.sparse.to_sparse_semi_structured`).

Gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune", eq. 1) raises the sparsity during
training from s_i to s_f along a cubic, fast at first while many redundant weights remain, slowly at the end:

    s_t = s_f + (s_i − s_f) · (1 − (t − t₀) / (n·Δt))³      for t₀ ≤ t ≤ t₀ + n·Δt
"""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.utils.errors import ConfigError


def check_sparsity(sparsity: float, field: str = "sparsity") -> None:
    """Refuse a sparsity outside [0, 1) (1 would remove every weight)."""
    if not isinstance(sparsity, int | float) or not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"{field}={sparsity} must be in [0, 1): the fraction of weights to remove, e.g. 0.5.")


def parse_n_m(n_m: str) -> tuple[int, int]:
    """`"2:4"` → (2, 4): keep N of every M consecutive weights."""
    try:
        n, m = (int(part) for part in str(n_m).split(":"))
    except ValueError:
        n, m = 0, 0
    if not 0 < n < m:
        raise ConfigError(f"n_m={n_m} must read N:M with 0 < N < M, e.g. n_m=2:4.")
    return n, m


def magnitude_scores(weight: Tensor) -> Tensor:
    """|W|: the magnitude criterion."""
    return weight.abs()


def wanda_scores(weight: Tensor, input_norms: Tensor) -> Tensor:
    """|W_ij| · ‖X_j‖₂ for a weight (out, in) and the input channels' L2 norms (in,) (Wanda eq. 1)."""
    return weight.abs() * input_norms.unsqueeze(0)


def keep_mask(scores: Tensor, sparsity: float, per_row: bool) -> Tensor:
    """True for the weights to keep: the (1 − sparsity) highest scores of the layer, or of each row."""
    groups = scores if per_row else scores.reshape(1, -1)
    n_prune = int(sparsity * groups.shape[1])
    mask = torch.ones_like(groups, dtype=torch.bool)
    if n_prune:
        lowest = groups.topk(n_prune, dim=1, largest=False).indices
        mask.scatter_(1, lowest, False)
    return mask.reshape(scores.shape)


def n_m_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """True for the N highest scores of every M consecutive weights of each row (N:M sparsity)."""
    out_features, in_features = scores.shape
    if in_features % m:
        raise ConfigError(
            f"n_m={n}:{m} needs layer widths divisible by {m}; this model has a layer {in_features} wide."
        )
    groups = scores.reshape(-1, m)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, groups.topk(n, dim=1).indices, True)
    return mask.reshape(out_features, in_features)


def cubic_sparsity(step: int, final: float, initial: float = 0.0, start: int = 0, end: int = 1) -> float:
    """Zhu & Gupta's schedule: the target sparsity at `step` (flat before `start` and after `end`)."""
    progress = min(max((step - start) / max(end - start, 1), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3
