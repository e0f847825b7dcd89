"""Sequence log-probabilities of completions: the quantity DPO compares and PPO's ratios are built from.

For a sequence x = (prompt, completion), log π(completion | prompt) = Σₜ log π(xₜ | x<t) over the
completion's tokens only. Prompt tokens are conditioning, not choices of the policy, and padding is not
text at all: both carry `IGNORE_INDEX` targets and contribute nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.losses.lm import IGNORE_INDEX


def token_logprobs(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """log p(targetₜ | x<t) per position (B, T), 0 where the target is `ignore_index`.

    Args:
        logits: (B, T, V) scores for each position's next token.
        targets: (B, T) the next tokens, `ignore_index` where no log-prob is wanted.
    In float32: a log-softmax in bf16 loses the small differences DPO's log-ratios are made of.
    """
    mask = targets != ignore_index
    safe = torch.where(mask, targets, torch.zeros_like(targets))  # any valid id; masked out below
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask


def sequence_logprobs(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Σₜ log p(targetₜ | x<t) over the non-ignored targets of each row: (B,)."""
    return token_logprobs(logits, targets, ignore_index).sum(dim=-1)


def completion_targets(ids: Tensor, completion_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Inputs and targets for scoring completions: ids[:, :-1], and ids[:, 1:] where the mask is set.

    Args:
        ids: (B, T) prompt + completion (+ right padding).
        completion_mask: (B, T) True on completion tokens (not prompt, not padding).
    """
    targets = torch.where(completion_mask[:, 1:], ids[:, 1:], torch.full_like(ids[:, 1:], IGNORE_INDEX))
    return ids[:, :-1], targets
