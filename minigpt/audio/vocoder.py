"""Log-mel features back to a waveform, without a trained vocoder: undo the front end step by step, then
Griffin-Lim for the phase (`minigpt.audio.griffin_lim`).

The front end (`minigpt.audio.features.log_mel`) computes L' = (max(L, max L − 8) + 4) / 4, L = log10(F·P);
its inverse, up to what the 80 dB floor and the mel bank threw away, is

    mel power   F·P = 10^(4·L' − 4)                      (`denormalize`)
    power       P̂ = clip₀(F⁺ · (F·P))                   (`mel_to_linear`, F⁺ the pseudo-inverse)
    magnitude   |X| = √P̂, phase by Griffin-Lim

Whisper's front end drops the last centred frame (T = samples // hop frames); Griffin-Lim's STFT keeps it, so
the last frame is repeated once to give the T + 1 frames whose inverse covers exactly T · hop samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.audio.features import MelConfig, denormalize
from minigpt.audio.griffin_lim import griffin_lim, mel_to_linear


def features_to_wave(
    features: Tensor,
    config: MelConfig,
    n_iter: int = 64,
    momentum: float = 0.99,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A waveform (T · hop samples) whose log-mel features approximate `features` (n_mels, T)."""
    if features.dim() != 2 or features.shape[0] != config.n_mels:
        raise ValueError(
            f"features of shape {tuple(features.shape)} are not (n_mels={config.n_mels}, frames); "
            "pass one utterance's log-mel features, bands first."
        )
    log_power = denormalize(features.float()) if config.normalize else features.float()
    power = mel_to_linear(torch.pow(10.0, log_power), config.filterbank())  # (n_freqs, T)
    magnitude = torch.cat([power, power[:, -1:]], dim=1).sqrt()  # (n_freqs, T + 1): the dropped last frame
    frames = features.shape[1]
    return griffin_lim(
        magnitude,
        config.n_fft,
        config.hop_length,
        n_iter=n_iter,
        momentum=momentum,
        length=frames * config.hop_length,
        generator=generator,
    )
