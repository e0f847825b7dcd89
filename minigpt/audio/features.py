"""The log-mel spectrogram, written out in torch: framing, Hann window, FFT, mel filter bank, log, normalisation.

Defaults are Whisper's front end (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
Supervision", §2.2: "re-sampled to 16,000 Hz, and an 80-channel log-magnitude Mel spectrogram
representation is computed on 25-millisecond windows with a stride of 10 milliseconds"), i.e. 16 kHz,
n_fft = 400, hop = 160, 80 mels, and its normalisation ("globally scale the input to be between -1 and 1").

For a waveform x (16 kHz) the steps are

    frames    x_t[n] = x_pad[t·hop + n] · w[n],   n < n_fft,  w = periodic Hann,  x_pad = reflect-pad(x, n_fft/2)
    power     P[t, k] = |Σ_n x_t[n] e^{-2πi kn / n_fft}|²,   k ≤ n_fft/2     (the last frame dropped, as Whisper)
    mel       M = F · Pᵀ,   F: (n_mels, n_fft/2 + 1) triangular filters on the Slaney mel scale, area-normalised
    log       L = log10(max(M, 1e-10))
    normalise L' = (max(L, max(L) − 8) + 4) / 4         (an 80 dB dynamic range, roughly in [−1, 1])

The Slaney mel scale (Slaney 1998, "Auditory Toolbox" tech. report #1998-010) is linear below 1 kHz and
logarithmic above: m(f) = 3f/200 for f < 1000, else 15 + 27·ln(f/1000)/ln(6.4). Each filter's weights are
scaled by 2/(f_{i+2} − f_i) so every filter has the same area ("slaney" normalisation).

Griffin-Lim (stage=tts) inverts these steps: `MelConfig.filterbank()` (pseudo-inverted), `window()`,
`n_fft`, `hop_length`, and `denormalize` for the last step (exact except where the floor clipped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

LOG_FLOOR = 1e-10  # the smallest power kept before the log (Whisper's clamp): −100 dB
DYNAMIC_RANGE = 8.0  # log10 units kept below each clip's maximum: 80 dB


def hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic (27 mels per factor 6.4) above."""
    linear = 3.0 * hz / 200.0
    log = 15.0 + 27.0 * torch.log(torch.clamp(hz, min=1e-10) / 1000.0) / math.log(6.4)
    return torch.where(hz < 1000.0, linear, log)


def mel_to_hz(mel: Tensor) -> Tensor:
    """The inverse of `hz_to_mel`."""
    linear = 200.0 * mel / 3.0
    log = 1000.0 * torch.exp((mel - 15.0) * math.log(6.4) / 27.0)
    return torch.where(mel < 15.0, linear, log)


@dataclass(frozen=True)
class MelConfig:
    """The front end's settings (Whisper's by default). `f_max=None` means the Nyquist frequency."""

    sample_rate: int = 16_000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"MelConfig.{name}={value!r} must be a positive integer.")
        if self.hop_length > self.n_fft:
            raise ValueError(
                f"MelConfig.hop_length={self.hop_length} exceeds n_fft={self.n_fft}: frames would skip samples."
            )

    @property
    def n_freqs(self) -> int:
        """FFT bins of a real signal: n_fft // 2 + 1."""
        return self.n_fft // 2 + 1

    def window(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The periodic Hann window w[n] = sin²(πn / n_fft), (n_fft,)."""
        return torch.hann_window(self.n_fft, periodic=True, dtype=dtype)

    def filterbank(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """Triangular Slaney-mel filters with Slaney area normalisation, (n_mels, n_fft // 2 + 1)."""
        f_max = self.f_max if self.f_max is not None else self.sample_rate / 2
        fft_hz = torch.linspace(0.0, self.sample_rate / 2, self.n_freqs, dtype=torch.float64)
        edges = mel_to_hz(
            torch.linspace(
                float(hz_to_mel(torch.tensor(self.f_min))),
                float(hz_to_mel(torch.tensor(f_max))),
                self.n_mels + 2,
                dtype=torch.float64,
            )
        )  # (n_mels + 2,): filter i rises from edges[i] to edges[i+1] and falls to edges[i+2]
        lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
        rising = (fft_hz - lower) / (centre - lower)
        falling = (upper - fft_hz) / (upper - centre)
        weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
        return (weights * (2.0 / (upper - lower))).to(dtype)  # equal area per filter

    def num_frames(self, num_samples: int) -> int:
        """Frames of a clip of `num_samples`: one per hop (the centred last frame is dropped, as Whisper)."""
        return num_samples // self.hop_length


def power_spectrogram(wave: Tensor, config: MelConfig) -> Tensor:
    """|STFT|² of (..., samples) → (..., frames, n_fft // 2 + 1), frames centred by reflect padding."""
    if wave.shape[-1] <= config.n_fft // 2:
        raise ValueError(
            f"A clip of {wave.shape[-1]} samples is too short for the front end (n_fft={config.n_fft}); "
            f"give at least {config.n_fft // 2 + 1} samples ({(config.n_fft // 2 + 1) / config.sample_rate:.3f} s)."
        )
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, 1, wave.shape[-1])  # (B, 1, S): F.pad's reflect mode wants a channel axis
    padded = torch.nn.functional.pad(flat, (config.n_fft // 2, config.n_fft // 2), mode="reflect")[:, 0]
    frames = padded.unfold(-1, config.n_fft, config.hop_length)[:, :-1]  # (B, frames, n_fft)
    spectrum = torch.fft.rfft(frames * config.window(wave.dtype).to(wave.device), dim=-1)  # (B, frames, n_freqs)
    return (spectrum.real**2 + spectrum.imag**2).reshape(*lead, -1, config.n_freqs)


def log_mel(wave: Tensor, config: MelConfig | None = None) -> Tensor:
    """Log-mel features of (..., samples) → (..., n_mels, frames); Whisper-normalised per clip if `config.normalize`."""
    config = config or MelConfig()
    power = power_spectrogram(wave, config)  # (..., frames, n_freqs)
    mel = power @ config.filterbank(wave.dtype).to(wave.device).T  # (..., frames, n_mels)
    log = torch.clamp(mel, min=LOG_FLOOR).log10().transpose(-1, -2)  # (..., n_mels, frames)
    if not config.normalize:
        return log
    peak = log.amax(dim=(-2, -1), keepdim=True)
    return (torch.maximum(log, peak - DYNAMIC_RANGE) + 4.0) / 4.0


def denormalize(features: Tensor) -> Tensor:
    """log10 mel power from normalised features: the inverse of the last step (x·4 − 4)."""
    return features * 4.0 - 4.0
