"""Gradual magnitude pruning while training (Zhu & Gupta 2017), switched on by `prune.schedule=gradual`.

Every `frequency` steps from `start_step` to `end_step` the target sparsity rises along the cubic of
`minigpt.compress.sparsity.cubic_sparsity`, and each block linear layer's smallest weights (by |W|, over
the whole layer) are masked to zero. After every optimizer step the masks are applied again, so a pruned
weight stays at zero while the others keep training and take over its work: one-shot pruning removes
weights the network cannot compensate for, gradual pruning lets it recover between small cuts.
The model folder the run writes holds the zeros (an ordinary folder; `evaluate.py` reads it).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from minigpt.compress.sparsity import check_sparsity, cubic_sparsity, keep_mask, magnitude_scores
from minigpt.utils.errors import ConfigError


class GradualPruning(L.Callback):
    """Cubic-schedule magnitude pruning of the block linear weights (`schedule=None`: does nothing).

    Args:
        schedule: `gradual` or None (off).
        final_sparsity, initial_sparsity: s_f and s_i of the schedule, in [0, 1).
        start_step, end_step: t₀ and t₀ + n·Δt; `end_step=None` is three quarters of `trainer.max_steps`,
            leaving the last quarter to recover at the final sparsity (Zhu & Gupta §3).
        frequency: Δt, steps between two mask updates.
    """

    def __init__(
        self,
        schedule: str | None = None,
        final_sparsity: float = 0.5,
        initial_sparsity: float = 0.0,
        start_step: int = 0,
        end_step: int | None = None,
        frequency: int = 10,
    ) -> None:
        if schedule not in (None, "gradual"):
            raise ConfigError(f"prune.schedule={schedule} is unknown; use prune.schedule=gradual or null (off).")
        check_sparsity(final_sparsity, "prune.final_sparsity")
        check_sparsity(initial_sparsity, "prune.initial_sparsity")
        if frequency < 1:
            raise ConfigError(f"prune.frequency={frequency} must be a positive number of steps, e.g. 10.")
        self.on = schedule == "gradual"
        self.final, self.initial = final_sparsity, initial_sparsity
        self.start, self.end, self.frequency = start_step, end_step, frequency
        self.masks: dict[str, Tensor] = {}
        self.sparsity = 0.0

    @staticmethod
    def layers(module: L.LightningModule) -> dict[str, nn.Linear]:
        """The block linear layers of the stage's model (LoRA adapters excluded)."""
        return {
            name: m
            for name, m in module.model.named_modules()
            if name.startswith("blocks.") and isinstance(m, nn.Linear) and "lora_" not in name
        }

    @torch.no_grad()
    def _apply(self, module: L.LightningModule) -> None:
        for name, linear in self.layers(module).items():
            if name in self.masks:
                linear.weight.mul_(self.masks[name])

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """At each update step of the schedule, recompute the masks at its sparsity and apply them."""
        step = trainer.global_step
        end = self.end if self.end is not None else int(0.75 * trainer.max_steps)
        # Every `frequency` steps, and at `end_step` itself, where the schedule reaches the final sparsity.
        if not self.on or not self.start <= step <= end or (step != end and (step - self.start) % self.frequency):
            return
        self.sparsity = cubic_sparsity(step, self.final, self.initial, self.start, end)
        self.masks = {
            name: keep_mask(magnitude_scores(linear.weight.detach()), self.sparsity, per_row=False)
            for name, linear in self.layers(pl_module).items()
        }
        self._apply(pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Keep the pruned weights at zero after the optimizer step, and log the sparsity."""
        if self.on:
            self._apply(pl_module)
            pl_module.log("prune/sparsity", self.sparsity)

    def state_dict(self) -> dict[str, Any]:
        """The masks and sparsity, so that a resumed run keeps pruning where it stopped."""
        return {"masks": self.masks, "sparsity": self.sparsity}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict`."""
        self.masks, self.sparsity = state_dict["masks"], state_dict["sparsity"]
