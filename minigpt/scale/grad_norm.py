"""Gradient clipping by the global norm when some gradients are split over the ranks and others are whole.

Tensor parallelism (each rank holds a slice of a split layer) and expert parallelism (each rank holds its own
experts) both leave a model whose gradients are partly spread over the ranks and partly replicated, which
`torch.nn.utils.clip_grad_norm_` cannot see: run locally it would clip each rank by a different norm, and
the replicated weights would drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def clip_split_grad_norm(split: Sequence[Tensor], whole: Sequence[Tensor], max_norm: float, group: Any) -> Tensor:
    """Scale all gradients so that their global 2-norm is at most `max_norm`; returns the norm before.

    ‖g‖² = Σ_ranks Σ_split g² + Σ_whole g²: the squares of `split` gradients (each rank holds different
    entries) are summed over the ranks of `group`; `whole` ones (every rank holds all of them) count once.
    Every rank of `group` must call it (an all-reduce), and gets the same norm and the same scale.
    """
    split_sq = torch.zeros((), dtype=torch.float32)
    whole_sq = torch.zeros((), dtype=torch.float32)
    for grad in split:
        split_sq += grad.float().pow(2).sum().cpu()
    for grad in whole:
        whole_sq += grad.float().pow(2).sum().cpu()
    if group is not None:
        torch.distributed.all_reduce(split_sq, group=group)
    total = (split_sq + whole_sq).sqrt()
    scale = float(max_norm / (total + 1e-6))  # the epsilon torch.nn.utils.clip_grad_norm_ uses
    if scale < 1.0:
        for grad in (*split, *whole):
            grad.mul_(scale)
    return total
