"""Validation loss, perplexity and bits per byte of a model on a data module's validation split."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric
from torchmetrics.text import Perplexity

from minigpt.losses.lm import bits_per_byte, lm_loss
from minigpt.model.transformer import Transformer


@torch.no_grad()
def evaluate_lm(model: Transformer, loader: DataLoader, bytes_per_token: float | None = None) -> dict[str, float]:
    """Token-weighted mean loss and torchmetrics' perplexity over every batch of `loader`.

    Perplexity is computed independently by torchmetrics from the logits, so `ppl == exp(loss)` is a
    cross-check of our loss, not an identity by construction.
    """
    model.eval()
    loss_metric, ppl_metric = MeanMetric(), Perplexity()
    tokens = 0
    for inputs, targets in loader:
        logits, _ = model(inputs)
        loss_metric.update(lm_loss(logits, targets), weight=targets.numel())
        ppl_metric.update(logits.float(), targets)
        tokens += targets.numel()
    loss = float(loss_metric.compute())
    result = {"val/loss": loss, "val/ppl": float(ppl_metric.compute()), "val/tokens": float(tokens)}
    if bytes_per_token:
        result["val/bpb"] = float(bits_per_byte(loss, bytes_per_token))
    return result
