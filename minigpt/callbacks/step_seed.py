"""Make every random draw of a training step (dropout masks) a function of (seed, step, rank).

Saving and restoring RNG states in a checkpoint is not enough for an identical resumed curve: whatever
else draws from the global generator between the save and the next step (a validation dataloader's
worker seed, a sample) differs between the uninterrupted and the resumed run. Reseeding at the start of
each micro-batch from numbers the checkpoint already restores (the global step) removes that history,
as `RandomWindows` does for the data order.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch


class StepSeed(L.Callback):
    """Before each training micro-batch, seed torch (CPU and CUDA) from (seed, rank, micro-batch count).

    The micro-batch count is `global_step · accumulate_grad_batches + batch_idx mod accumulate`, so the
    micro-batches of one accumulated step get different masks, and a resumed run continues the count.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Reseed for this micro-batch."""
        accumulate = trainer.accumulate_grad_batches
        micro_batch = trainer.global_step * accumulate + batch_idx % accumulate
        # SeedSequence hashes the triple into well-mixed entropy (nearby triples → unrelated streams).
        entropy = np.random.SeedSequence([self.seed, trainer.global_rank, micro_batch]).generate_state(2)
        torch.manual_seed(int(entropy[0]) << 32 | int(entropy[1]))
