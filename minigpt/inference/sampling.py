"""Turning next-token logits into a choice: penalties, temperature, top-k / top-p / min-p filters.

Every function maps logits (N, V) to logits (N, V); a filtered-out token gets -inf, so that softmax gives
it probability exactly 0 and `torch.multinomial` can never pick it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """Make tokens already in the sequence (`seen`, bool (N, V)) less likely (Keskar et al. 2019, CTRL §4.1).

    CTRL divides the logit by the penalty θ; dividing a *negative* logit would raise it, so negative
    logits are multiplied instead: the seen token always loses probability when θ > 1.
    """
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the `k` largest logits of each row (Fan et al. 2018, "Hierarchical Neural Story Generation")."""
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (N, 1): the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep the smallest set of top tokens whose probability sums to ≥ p.

    Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration", §3.1, eq. 2. In descending
    order a token stays iff the mass of the tokens *before* it is still < p, so the most likely token
    always stays and the token that crosses p is included.
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: Tensor, min_p: float) -> Tensor:
    """Keep tokens whose probability is ≥ `min_p` × the top token's (Nguyen et al. 2024, "min-p sampling").

    The cut scales with the model's confidence: wide when the distribution is flat, narrow when peaked.
    In log space: log p_i ≥ log min_p + max_j log p_j, and log-softmax differences equal logit differences.
    """
    threshold = logits.max(dim=-1, keepdim=True).values + torch.log(torch.tensor(min_p, dtype=logits.dtype))
    return logits.masked_fill(logits < threshold, float("-inf"))


def process_logits(
    logits: Tensor,
    *,
    seen: Tensor | None = None,
    repetition: float = 1.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> Tensor:
    """Apply in order: repetition penalty, temperature, top-k, top-p, min-p (as `transformers` does)."""
    if seen is not None and repetition != 1.0:
        logits = repetition_penalty(logits, seen, repetition)
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    if min_p is not None and min_p > 0.0:
        logits = min_p_filter(logits, min_p)
    return logits


def sample_from(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row from softmax(logits) (N, V) → (N,); -inf logits are never drawn."""
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
