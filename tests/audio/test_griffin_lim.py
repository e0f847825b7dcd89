"""Griffin-Lim: a pure tone's frequency survives the loss of phase; the classic iteration does not move away
from the target magnitude; the mel pseudo-inverse undoes a filter bank on what the bank can see."""

from __future__ import annotations

import pytest
import torch

from minigpt.audio.features import MelConfig
from minigpt.audio.griffin_lim import griffin_lim, mel_to_linear, spectral_convergence, stft

RATE, N_FFT, HOP = 16_000, 400, 160


def _tone(freq: float, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(RATE * seconds)) / RATE
    return 0.5 * torch.sin(2 * torch.pi * freq * t)


def _share_near(signal: torch.Tensor, freq: float, band_hz: float = 10.0) -> tuple[float, float]:
    """(share of the energy within ±band_hz of freq, the peak's frequency), edges (0.05 s) cut off."""
    inner = signal[RATE // 20 : -RATE // 20]
    power = torch.fft.rfft(inner * torch.hann_window(inner.shape[-1])).abs() ** 2
    hz = torch.arange(power.shape[-1]) * RATE / inner.shape[-1]
    return float(power[(hz - freq).abs() <= band_hz].sum() / power.sum()), float(hz[power.argmax()])


@pytest.mark.parametrize("freq", [440.0, 1234.0])
def test_griffin_lim_recovers_a_pure_tone(freq: float) -> None:
    tone = _tone(freq)
    magnitude = stft(tone, N_FFT, HOP).abs()

    def rebuild(n_iter: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        return griffin_lim(magnitude, N_FFT, HOP, n_iter=n_iter, length=tone.shape[-1], generator=gen)

    # The random-phase start smears the tone over neighbouring frequencies (~20 % of its energy within
    # ±10 Hz here, its peak off by up to 30 Hz); 32 iterations put it back on one line.
    start_share, _ = _share_near(rebuild(0), freq)
    rebuilt = rebuild(32)
    share, peak = _share_near(rebuilt, freq)
    assert rebuilt.shape == tone.shape
    assert start_share < 0.5 and share > 0.95
    assert abs(peak - freq) <= 2.5  # the FFT of 0.4 s has 2.5 Hz bins
    assert spectral_convergence(rebuilt, magnitude, N_FFT, HOP) < 0.15


def test_iterations_bring_the_magnitude_closer() -> None:
    # A chirp (200 → 3000 Hz) has structure that a random phase destroys; classic GL (α = 0) never increases
    # the inconsistency (Griffin & Lim 1984 §3), and fast GL (α = 0.99) gets further in as many steps.
    t = torch.arange(RATE // 2) / RATE
    chirp = torch.sin(2 * torch.pi * (200 * t + 2800 * t**2))
    magnitude = stft(chirp, N_FFT, HOP).abs()

    def distance(n_iter: int, momentum: float) -> float:
        gen = torch.Generator().manual_seed(0)
        signal = griffin_lim(
            magnitude, N_FFT, HOP, n_iter=n_iter, momentum=momentum, length=chirp.shape[-1], generator=gen
        )
        return spectral_convergence(signal, magnitude, N_FFT, HOP)

    classic = [distance(n, 0.0) for n in (0, 4, 16)]
    assert classic[0] > classic[1] > classic[2]
    assert distance(16, 0.99) < classic[2]


def test_mel_pseudo_inverse_is_exact_on_what_the_bank_sees() -> None:
    # A random non-negative "filter bank" with fewer rows than columns: F·clip₀(F⁺·M) = M whenever F⁺·M ≥ 0,
    # which holds for M = F·P with P in the row space of F and non-negative (here P = Fᵀ·w, w ≥ 0).
    gen = torch.Generator().manual_seed(0)
    bank = torch.rand(8, 33, generator=gen)
    power = bank.T @ torch.rand(8, 5, generator=gen)  # (33, 5), in F's row space, ≥ 0
    mel = bank @ power
    linear = mel_to_linear(mel, bank)
    torch.testing.assert_close(linear, power, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="mel bands"):
        mel_to_linear(mel[:4], bank)


def test_truncated_inverse_does_not_amplify_small_errors() -> None:
    # Whisper's bank is nearly rank-deficient (σ_min/σ_max ≈ 1e-20): 1 % errors on a mel spectrogram (what a model
    # predicts is never exactly F·P) blow up through the full pseudo-inverse, not through the truncated one.
    bank = MelConfig().filterbank()
    gen = torch.Generator().manual_seed(0)
    power = torch.rand(bank.shape[1], 20, generator=gen)
    mel = bank @ power * (1 + 0.01 * torch.randn(bank.shape[0], 20, generator=gen))
    assert mel_to_linear(mel, bank).max() < 10 * power.max()
    assert mel_to_linear(mel, bank, rtol=0.0).max() > 1000 * power.max()


def test_griffin_lim_refuses_a_wrong_n_fft() -> None:
    with pytest.raises(ValueError, match="n_fft=512"):
        griffin_lim(torch.ones(201, 10), 512, HOP)
