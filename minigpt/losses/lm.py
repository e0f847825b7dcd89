"""Language-modelling loss: next-token cross-entropy, with an optional mask."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


def lm_loss(logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX, reduction: str = "mean") -> Tensor:
    """Mean cross-entropy −(1/N) Σ log p(targetₜ | x<t) over the targets that are not `ignore_index`
    (`reduction="sum"`: the sum, without 1/N — a part of a batch whose N counts the whole batch).

    Args:
        logits: (B, T, V) unnormalised scores for the token at each position's *next* step.
        targets: (B, T) the next tokens (the inputs shifted left by one), `ignore_index` where no loss
            applies (padding, prompt tokens in SFT).
    Computed in float32 even under bf16 autocast: the log-sum-exp over a large vocabulary loses
    precision in bf16.
    """
    return F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=ignore_index, reduction=reduction
    )


def bits_per_byte(loss_nats_per_token: Tensor | float, bytes_per_token: float) -> Tensor | float:
    """Convert a mean loss in nats/token into bits per byte of UTF-8 text.

    A token carries `loss / ln 2` bits on average and stands for `bytes_per_token` bytes. Bits per byte
    makes models with different tokenizers comparable: a char and a BPE model predict the same bytes.
    """
    return loss_nats_per_token / (math.log(2) * bytes_per_token)
