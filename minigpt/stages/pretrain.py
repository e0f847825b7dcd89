"""`stage=pretrain`: next-token prediction on raw text."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from minigpt.losses.lm import bits_per_byte, lm_loss
from minigpt.stages.base import Stage


class PretrainStage(Stage):
    """Language-model pretraining: minimise cross-entropy of each next token (Radford et al. 2018).

    Logs `train/loss`, and per validation `val/loss`, `val/ppl` (= e^loss) and, when the data knows its
    bytes per token, `val/bpb` (bits per byte, comparable across tokenizers).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.val_loss = MeanMetric()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One step of LM loss (+ any auxiliary loss the model reports)."""
        inputs, targets = batch
        logits, aux = self.model(inputs)
        loss = lm_loss(logits, targets)
        total = loss + self.aux_loss(aux)
        self.log("train/loss", loss, prog_bar=True)
        self.log_moe_metrics(aux)
        return total

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Accumulate the validation loss, weighted by tokens."""
        inputs, targets = batch
        logits, _ = self.model(inputs)
        self.val_loss.update(lm_loss(logits, targets), weight=targets.numel())

    def on_validation_epoch_end(self) -> None:
        """Log mean validation loss, perplexity and bits per byte."""
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log_dict({"val/loss": loss, "val/ppl": torch.exp(loss)}, prog_bar=True, sync_dist=True)
        bytes_per_token = getattr(self.trainer.datamodule, "val_bytes_per_token", None)
        if bytes_per_token:
            self.log("val/bpb", bits_per_byte(loss, bytes_per_token), sync_dist=True)
