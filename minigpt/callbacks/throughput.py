"""Tokens per second and model FLOPs utilisation (MFU), logged every `log_every_n_steps`."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from minigpt.scale.peak_flops import peak_flops


class Throughput(L.Callback):
    """Log `perf/tokens_per_s` and, if `peak_flops` is known, `perf/mfu` (Chowdhery et al. 2022, App. B).

    MFU = achieved model FLOPs per second / peak FLOPs per second, where model FLOPs per token come from
    `Transformer.flops_per_token` (6N + 12·L·C·T). The timer spans whole steps (data, forward, backward,
    optimizer), measured between consecutive batch ends, so framework overhead counts against us.

    Args:
        peak_flops: peak FLOP/s of one device; `None` looks it up for known GPUs, or measures (and caches
            in `cache_dir`) a CPU's matmul rate once (`minigpt.scale.peak_flops`).
        window: batches per throughput measurement.
        cache_dir: where a measured CPU peak is cached between runs.
    """

    def __init__(self, peak_flops: float | None = None, window: int = 10, cache_dir: str | None = None) -> None:
        self.peak_flops, self.window, self.cache_dir = peak_flops, window, cache_dir
        self._t0: float | None = None
        self._tokens = 0
        self._steps = 0
        self.metrics: dict[str, float] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Resolve the peak FLOP/s of this run's device and precision, unless the user set it."""
        if self.peak_flops is None:
            self.peak_flops = peak_flops(pl_module.device, str(trainer.precision), self.cache_dir)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Accumulate tokens; every `window` batches, log the rate over the window."""
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch.get("input_ids")
        if not isinstance(inputs, torch.Tensor):  # an RL batch of prompts: no fixed token count to rate
            return
        now = time.perf_counter()
        if self._t0 is None:  # the first batch includes warm-up costs: start timing after it
            self._t0 = now
            return
        # Ranks that read different batches: all of them (DDP, FSDP), or 1 per tensor-parallel group.
        replicas = (trainer.distributed_sampler_kwargs or {}).get("num_replicas", trainer.world_size)
        self._tokens += inputs.numel() * replicas
        self._steps += 1
        if self._steps >= self.window:
            self.metrics = {"perf/tokens_per_s": self._tokens / (now - self._t0)}
            if self.peak_flops:
                flops = pl_module.model.flops_per_token(inputs.shape[1]) * self.metrics["perf/tokens_per_s"]
                self.metrics["perf/mfu"] = flops / (self.peak_flops * trainer.world_size)
            self._t0, self._tokens, self._steps = now, 0, 0
        if self.metrics:  # the latest window's rate, logged at whatever cadence the trainer logs
            pl_module.log_dict(self.metrics, on_step=True, on_epoch=False)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Validation time is not training throughput: restart the window afterwards."""
        self._t0, self._tokens, self._steps = None, 0, 0
