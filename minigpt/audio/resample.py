"""Band-limited resampling by a rational factor (windowed-sinc interpolation), in torch.

To go from rate `orig` to `new` (reduced by their gcd to integers M → L), output sample k sits at input
time t_k = k·M/L. Ideal band-limited interpolation (Shannon) is y[k] = Σ_n x[n] · c·sinc(c·(t_k − n)) with
cutoff c = min(1, L/M) (in units of the input's Nyquist rate, so that downsampling first removes what the
new rate cannot hold). The sinc is cut to ±`zeros` zero crossings and tapered by a Hann window
(Smith, "Digital Audio Resampling", ccrma.stanford.edu/~jos/resample). Since t_k repeats its fractional
part every L outputs, there are only L distinct kernels: one strided `conv1d` with L output channels
computes all phases at once, and the channels are interleaved back into time.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=16)
def _kernels(orig: int, new: int, zeros: int, rolloff: float, dtype: torch.dtype) -> tuple[Tensor, int]:
    """The L phase kernels (taps, new) and the half-width `pad` (input samples each side); cached per rate pair."""
    cutoff = min(orig, new) / orig * rolloff  # c, in cycles per input sample × 2
    pad = math.ceil(zeros / cutoff)
    n = torch.arange(-pad, pad + orig, dtype=torch.float64)  # input offsets a phase's window covers
    phase = torch.arange(new, dtype=torch.float64)[:, None] * orig / new  # t_k − (first input of its block)
    t = (n[None, :] - phase) * cutoff  # (new, taps), in zero-crossing units
    window = torch.where(t.abs() <= zeros, torch.cos(t * math.pi / zeros / 2) ** 2, torch.zeros_like(t))
    kernel = cutoff * torch.sinc(t) * window
    return kernel.T.contiguous().to(dtype), pad


def resample(wave: Tensor, orig: int, new: int, zeros: int = 16, rolloff: float = 0.95) -> Tensor:
    """Resample (..., samples) from `orig` Hz to `new` Hz; the output has ceil(samples · new / orig) samples."""
    if orig <= 0 or new <= 0:
        raise ValueError(f"Sample rates must be positive, got {orig} → {new}.")
    if orig == new:
        return wave
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    kernels, pad = _kernels(orig, new, zeros, rolloff, wave.dtype)
    lead, length = wave.shape[:-1], wave.shape[-1]
    x = torch.nn.functional.pad(wave.reshape(-1, length), (pad, pad + orig))  # zeros beyond the clip
    # Window b starts at input b·M − pad; phase p of it gives output k = b·L + p, at time t_k = b·M + p·M/L, as
    # Σ_j x[b·M + j − pad] · K[j, p] with K[j, p] = h(j − pad − p·M/L) = h(n − t_k) = h(t_k − n) (h is even).
    windows = x.unfold(-1, kernels.shape[0], orig)  # (B, blocks, taps)
    y = (windows @ kernels.to(wave.device)).reshape(x.shape[0], -1)  # (B, blocks·L): phases interleaved
    return y[:, : math.ceil(length * new / orig)].reshape(*lead, -1)
