"""WAV reading/writing (formats, errors) and band-limited resampling."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch

from minigpt.audio.resample import resample
from minigpt.audio.wav import encode_wav, load_audio, read_wav, write_wav
from minigpt.utils.errors import DataError


def tone(rate: int, seconds: float = 0.5, hz: float = 440.0) -> torch.Tensor:
    return torch.sin(2 * math.pi * hz * torch.arange(int(rate * seconds), dtype=torch.float64) / rate)


@pytest.mark.parametrize(("orig", "new"), [(22_050, 16_000), (8_000, 16_000), (44_100, 16_000)])
def test_resampled_tone_matches_the_tone_at_the_new_rate(orig, new):
    y = resample(tone(orig), orig, new)
    expected = tone(new)
    assert y.shape == expected.shape
    inner = slice(100, -100)  # the edges see the zero padding beyond the clip
    assert (y - expected)[inner].abs().max() < 2e-3


def test_downsampling_removes_what_the_new_rate_cannot_hold():
    y = resample(tone(22_050, hz=9_000), 22_050, 16_000)  # 9 kHz > 8 kHz Nyquist: would alias to 7 kHz
    assert y[100:-100].abs().max() < 0.02


def test_wav_round_trip_and_formats(tmp_path):
    x = (0.5 * tone(16_000)).float().numpy()
    y, rate = read_wav(write_wav(tmp_path / "a.wav", x, 16_000))
    assert rate == 16_000 and np.abs(y - x).max() < 1 / 32767
    # float32 stereo (format 3): channels are averaged
    stereo = np.stack([x, 0 * x], axis=1).astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 2, 8_000, 8_000 * 8, 8, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(stereo)) + stereo
    (tmp_path / "f.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    y, rate = read_wav(tmp_path / "f.wav")
    assert rate == 8_000 and np.allclose(y, x / 2)
    y, note = load_audio(tmp_path / "f.wav")
    assert len(y) == 2 * len(x) and "8000 Hz; resampled to 16000 Hz" in (note or "")


def test_bad_files_are_named(tmp_path):
    (tmp_path / "x.wav").write_text("not audio at all")
    with pytest.raises(DataError, match="is not a WAV file"):
        read_wav(tmp_path / "x.wav")
    with pytest.raises(DataError, match="does not exist"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "cut.wav").write_bytes(encode_wav(np.zeros(10), 16_000)[:36])
    with pytest.raises(DataError, match="no data chunk"):
        read_wav(tmp_path / "cut.wav")
