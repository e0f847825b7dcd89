"""Auxiliary losses of a mixture-of-experts router: load balancing and the router z-loss.

Both take the router's float32 outputs for the N tokens of a batch (flattened over batch and time) and
return a scalar; the MoE layer weights them by `model.moe.aux_loss_coef` / `z_loss_coef` and reports the
sum as `aux["aux_loss"]`, which every stage adds to its main loss.
"""

from __future__ import annotations

import torch
from torch import Tensor


def load_balancing_loss(router_probs: Tensor, expert_index: Tensor) -> Tensor:
    """Switch Transformer balancing loss without its α: E · Σᵢ fᵢ · Pᵢ (Fedus et al. 2021, eq. 4–6).

    fᵢ (eq. 5) is the fraction of routing assignments that go to expert i — a count, so it carries no
    gradient — and Pᵢ (eq. 6) is the mean router probability of expert i, which does. Their dot product
    is smallest when the probability mass follows a uniform dispatch, and the gradient through Pᵢ pushes
    probability away from overloaded experts. For top-k routing every (token, choice) pair counts once
    in fᵢ (GShard, Lepikhin et al. 2020), so Σᵢ fᵢ = 1 for every k.

    Minimum: with uniform probabilities Pᵢ = 1/E the loss is E · Σᵢ fᵢ / E = 1 whatever the dispatch;
    perfectly balanced routing also gives 1. The caller multiplies by α (`aux_loss_coef`, 1e-2 in the
    paper).

    Args:
        router_probs: (N, E) softmax over experts for each token.
        expert_index: (N, k) integer ids of the experts each token was sent to.
    """
    num_experts = router_probs.shape[-1]
    counts = torch.bincount(expert_index.flatten(), minlength=num_experts)
    fraction_dispatched = counts.to(router_probs.dtype) / expert_index.numel()  # fᵢ, eq. 5
    mean_prob = router_probs.mean(dim=0)  # Pᵢ, eq. 6
    return balancing_loss_from(fraction_dispatched, mean_prob)


def balancing_loss_from(fraction_dispatched: Tensor, mean_prob: Tensor) -> Tensor:
    """E · Σᵢ fᵢ · Pᵢ (Fedus et al. 2021, eq. 4 without α) from the two per-expert statistics (E,).

    Split out so that expert parallelism can first sum fᵢ and Pᵢ over the ranks' batches: the loss is a
    product of two means, so the mean of the ranks' losses is not the loss of the global batch.
    """
    return fraction_dispatched.numel() * torch.sum(fraction_dispatched * mean_prob)  # eq. 4 without α


def router_z_loss(router_logits: Tensor) -> Tensor:
    """Router z-loss (1/N) Σₓ (log Σᵢ exp zᵢ(x))² (Zoph et al. 2022, ST-MoE, eq. 5).

    It penalises large router logits: their exponentials lose precision (especially in bf16), which the
    paper found to destabilise training; the log-sum-exp is the natural size of a logit vector.

    Args:
        router_logits: (N, E) router scores before the softmax.
    """
    return torch.logsumexp(router_logits.float(), dim=-1).square().mean()
