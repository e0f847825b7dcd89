"""Learning-rate schedules: linear warmup, then cosine decay to a floor, or a hold and a linear cool-down (WSD)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from minigpt.utils.errors import ConfigError


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step `step`.

    Linear warmup from ~0 over `warmup_steps` (Adam's second-moment estimates are noisy at first, and a
    full-size step then can wreck the init), then a half cosine (Loshchilov & Hutter 2017, SGDR eq. 5)
    from 1 down to `min_lr_ratio` at `total_steps`, flat after that.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if step >= total_steps:
        return min_lr_ratio
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> LambdaLR:
    """A `LambdaLR` following `warmup_cosine_factor` (stepped once per optimizer step)."""
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, min_lr_ratio))


def warmup_stable_decay_factor(
    step: int, warmup_steps: int, total_steps: int, decay_fraction: float, min_lr_ratio: float
) -> float:
    """Multiplier of the peak lr at `step` for warmup-stable-decay (WSD).

    Linear warmup over `warmup_steps`, the peak held, then a linear cool-down to `min_lr_ratio` over the
    last `decay_fraction` of `total_steps` (Hu et al. 2024, MiniCPM §4.1; Hägele et al. 2024, "Scaling Laws
    and Compute-Optimal Training Beyond Fixed Training Durations"). Most of the loss drop comes in the
    cool-down, and a run can be extended from the stable phase; modded-nanogpt cools down over its last third.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_start = total_steps - int(decay_fraction * total_steps)
    if step < decay_start:
        return 1.0
    if step >= total_steps:
        return min_lr_ratio
    progress = (step - decay_start) / max(total_steps - decay_start, 1)
    return 1.0 - (1.0 - min_lr_ratio) * progress


def warmup_stable_decay(
    optimizer: Optimizer,
    warmup_steps: int,
    total_steps: int,
    decay_fraction: float = 0.4,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A `LambdaLR` following `warmup_stable_decay_factor` (`optim.schedule=wsd`; stepped once per optimizer step)."""
    return LambdaLR(
        optimizer,
        lambda step: warmup_stable_decay_factor(step, warmup_steps, total_steps, decay_fraction, min_lr_ratio),
    )


def lr_schedule(
    optimizer: Optimizer,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.1,
    decay_fraction: float = 0.4,
) -> LambdaLR:
    """The schedule `optim.schedule` names: `cosine` (`warmup_cosine`) or `wsd` (`warmup_stable_decay`)."""
    if schedule == "cosine":
        return warmup_cosine(optimizer, warmup_steps, total_steps, min_lr_ratio)
    if schedule == "wsd":
        if not 0.0 < decay_fraction <= 1.0:
            raise ConfigError(f"optim.decay_fraction={decay_fraction} must be in (0, 1] (e.g. 0.4).")
        return warmup_stable_decay(optimizer, warmup_steps, total_steps, decay_fraction, min_lr_ratio)
    raise ConfigError(f"optim.schedule={schedule!r} is unknown; use 'cosine' or 'wsd'.")
