"""The log-mel front end against a reference built from other code: scipy's STFT, the filter bank Whisper ships
(computed by librosa, `whisper/assets/mel_filters.npz` in the pinned openai-whisper sdist) and Whisper's
log / normalisation written in numpy."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy.signal import stft

from minigpt.audio.features import MelConfig, hz_to_mel, log_mel, mel_to_hz, power_spectrogram
from minigpt.data.assets import GPT2_TIKTOKEN, fetch, read_members


def whisper_filters() -> np.ndarray:
    archive = fetch(GPT2_TIKTOKEN)  # the same pinned sdist the GPT-2 ranks come from
    blob = next(iter(read_members(archive, "*/whisper/assets/mel_filters.npz").values()))
    return np.load(io.BytesIO(blob))["mel_80"].astype(np.float64)


def chirp(seconds: float = 1.5, rate: int = 16_000) -> np.ndarray:
    """A linear chirp from 100 Hz to 7 kHz: every mel band sees energy at some time."""
    t = np.arange(int(seconds * rate)) / rate
    f0, f1 = 100.0, 7000.0
    return 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))


def reference_log_mel(x: np.ndarray) -> np.ndarray:
    """Whisper's recipe with scipy's STFT: centred (reflect) frames, |X|², mel, log10, 80 dB floor, (x+4)/4."""
    padded = np.pad(x, 200, mode="reflect")
    # scipy scales by 1/sum(window) with scaling="spectrum"; undo it to get the plain DFT of each frame.
    _, _, z = stft(
        padded, window="hann", nperseg=400, noverlap=240, boundary=None, padded=False, detrend=False, scaling="spectrum"
    )
    power = np.abs(z * np.hanning(401)[:-1].sum()) ** 2  # periodic Hann of 400 = the first 400 of a 401-point Hann
    mel = whisper_filters() @ power[:, :-1]  # Whisper drops the last frame
    log = np.log10(np.maximum(mel, 1e-10))
    return (np.maximum(log, log.max() - 8.0) + 4.0) / 4.0


def test_filterbank_equals_whispers():
    ours = MelConfig().filterbank(torch.float64).numpy()
    np.testing.assert_allclose(ours, whisper_filters(), atol=1e-7)


def test_log_mel_equals_reference_on_a_chirp():
    x = chirp()
    ours = log_mel(torch.from_numpy(x).float()).double().numpy()
    ref = reference_log_mel(x)
    assert ours.shape == ref.shape == (80, len(x) // 160)
    assert np.abs(ours - ref).max() < 1e-4


def test_power_spectrogram_peaks_at_a_tone_and_batches():
    rate, f = 16_000, 1000.0
    x = torch.sin(2 * torch.pi * f * torch.arange(rate) / rate)
    power = power_spectrogram(torch.stack([x, 0.5 * x]), MelConfig())  # (2, frames, 201)
    assert int(power[0, 50].argmax()) == round(f / (rate / 400))  # 40 Hz per bin → bin 25
    torch.testing.assert_close(power[1], 0.25 * power[0])


def test_mel_scale_round_trips_and_short_clip_is_refused():
    hz = torch.tensor([0.0, 500.0, 1000.0, 4000.0, 8000.0], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(hz)), hz)
    with pytest.raises(ValueError, match="too short"):
        log_mel(torch.zeros(100))
