"""Text-to-speech losses: mel frames and durations (FastSpeech, Ren et al. 2019; FastSpeech 2, Ren et al. 2021).

* Mel: L1 = (1 / (N·n_mels)) Σ_{real frames f} Σ_m |M̂_{f,m} − M_{f,m}|, N the number of real frames —
  FastSpeech 2 (§2.1, "mean absolute error") uses L1 where FastSpeech used MSE; on log-mel frames L1 is less
  dominated by the loud bands and gives sharper spectrograms.
* Duration: MSE in the log domain, (1/T) Σ_{real t} (ℓ̂_t − log(1 + d_t))² (FastSpeech §3.3: "we predict the
  length in the logarithmic domain, which makes [it] more Gaussian and easier to train"; the +1 keeps a
  zero-frame character, such as a space between words said without a pause, finite).
"""

from __future__ import annotations

import torch
from torch import Tensor


def mel_l1(predicted: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean |M̂ − M| over the real frames (`valid` (B, F) True) and all bands; (B, F, n_mels) inputs."""
    weight = valid.unsqueeze(-1).to(predicted.dtype)  # (B, F, 1)
    return ((predicted - target).abs() * weight).sum() / (weight.sum() * predicted.shape[-1]).clamp_min(1.0)


def duration_mse(log_predicted: Tensor, durations: Tensor, valid: Tensor) -> Tensor:
    """Mean (ℓ̂ − log(1 + d))² over the real characters (`valid` (B, T) True); d in frames, (B, T) inputs."""
    weight = valid.to(log_predicted.dtype)
    error = (log_predicted - torch.log1p(durations.to(log_predicted.dtype))) ** 2
    return (error * weight).sum() / weight.sum().clamp_min(1.0)
