"""Utterances of the synthesised corpus: (text, language, voice, rate, pitch, noise) → a 16 kHz waveform, cached.

An `Utterance` is the full recipe of one clip. `render(utterance)` synthesises it with espeak-ng
(`minigpt.data.speech.espeak`), resamples espeak's 22,050 Hz to 16 kHz (`minigpt.audio.resample`), peak-
normalises it, and adds white Gaussian noise at `snr_db` drawn from the utterance's own `seed`, so the same
recipe always gives the same samples. The clean 16 kHz clip is cached as a WAV file named by a hash of
(espeak version, text, language, voice, rate, pitch): a second run reads it instead of synthesising, and the
noise (cheap, seeded) is added on reading. Noise at a signal-to-noise ratio of s dB has power
P_noise = P_signal · 10^(−s/10), with P the mean square of the clean clip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from minigpt.audio.resample import resample
from minigpt.audio.wav import read_wav, write_wav
from minigpt.data.assets import cache_root
from minigpt.data.speech.espeak import ESPEAK, espeak

SAMPLE_RATE = 16_000
PEAK = 0.9  # clean clips are scaled to this peak, so voices differ by timbre, not loudness


@dataclass(frozen=True)
class Utterance:
    """The recipe of one clip. `snr_db=None` is clean; `seed` draws the noise; `language` is espeak's code."""

    text: str
    language: str = "en"
    voice: str | None = None
    rate: int = 175
    pitch: int = 50
    snr_db: float | None = None
    seed: int = 0

    def cache_key(self) -> str:
        """Hash of what the clean clip depends on (not the noise): names its cached WAV."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("snr_db", "seed")}
        blob = json.dumps({"espeak": ESPEAK.version, **fields}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def clean_clip(utterance: Utterance, cache_dir: str | Path | None = None) -> np.ndarray:
    """The clean 16 kHz float32 clip of `utterance`, from the cache or synthesised (and cached) now."""
    path = cache_root(cache_dir) / "speech" / "clips" / f"{utterance.cache_key()}.wav"
    if path.exists():
        return read_wav(path)[0]
    out = espeak().synthesize(utterance.text, utterance.language, utterance.voice, utterance.rate, utterance.pitch)
    clip = resample(torch.from_numpy(out.samples).double(), out.sample_rate, SAMPLE_RATE).float().numpy()
    peak = float(np.abs(clip).max()) if clip.size else 0.0
    if peak > 0:
        clip = clip * (PEAK / peak)
    write_wav(path, clip, SAMPLE_RATE)
    return read_wav(path)[0]  # what later runs will read (16-bit), so the first run sees the same samples


def add_noise(clip: np.ndarray, snr_db: float | None, seed: int) -> np.ndarray:
    """`clip` plus white Gaussian noise at `snr_db` (None: unchanged), drawn from `seed`."""
    if snr_db is None or clip.size == 0:
        return clip
    power = float(np.mean(clip.astype(np.float64) ** 2))
    noise = np.random.default_rng(seed).standard_normal(clip.shape) * np.sqrt(power * 10.0 ** (-snr_db / 10.0))
    return (clip + noise).astype(np.float32)


def render(utterance: Utterance, cache_dir: str | Path | None = None) -> np.ndarray:
    """The 16 kHz float32 waveform of `utterance`: the cached clean clip plus its seeded noise."""
    return add_noise(clean_clip(utterance, cache_dir), utterance.snr_db, utterance.seed)
