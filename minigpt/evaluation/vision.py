"""Evaluating a vision-language model: exact-match per question type on held-out images, the text-only
answer prior, and a grid of images with the model's answers (`python evaluate.py run=<run> eval=vision`)."""

from __future__ import annotations

from torch import Tensor

from minigpt.losses.lm import IGNORE_INDEX


def reply_exact_match(logits: Tensor, targets: Tensor) -> Tensor:
    """Bool (B,): every trained target of the row is the argmax of its logits.

    Under teacher forcing this is exactly whether greedy decoding would write the gold reply (and its
    `<|end|>`): greedy follows the gold path as long as each argmax is the gold token. Rows without any
    target count as False.
    """
    trained = targets != IGNORE_INDEX  # (B, T)
    right = (logits.argmax(-1) == targets) | ~trained
    return right.all(dim=1) & trained.any(dim=1)
