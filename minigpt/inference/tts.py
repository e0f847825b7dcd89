"""Speaking: text → characters → mel frames (`TextToMel.synthesise`, predicted durations) → waveform (Griffin-Lim).

One function serves `python -m minigpt.speak`, the round-trip evaluation and the synthesis benchmark, so that
what is measured is what a user runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from minigpt.audio.vocoder import features_to_wave
from minigpt.model.tts import TextToMel
from minigpt.tokenizer.base import Tokenizer


@dataclass
class Speech:
    """One synthesised utterance: the waveform (samples,) at `sample_rate`, its log-mel frames (n_mels, T), and the
    seconds spent in the model (`model_seconds`) and in Griffin-Lim (`vocoder_seconds`)."""

    wave: Tensor
    features: Tensor
    sample_rate: int
    model_seconds: float
    vocoder_seconds: float

    @property
    def seconds(self) -> float:
        """Duration of the audio."""
        return self.wave.shape[-1] / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Seconds of compute per second of audio (below 1: faster than real time)."""
        return (self.model_seconds + self.vocoder_seconds) / self.seconds


def encode_text(tokenizer: Tokenizer, text: str, block_size: int) -> list[int]:
    """One id per character; text the model cannot read (unknown characters, too long, empty) is refused."""
    text = text.strip()
    if not text:
        raise ValueError('text is empty; give something to say, e.g. text="4 7 1".')
    ids = tokenizer.encode(text)
    unknown = sorted({c for c in text if tokenizer.decode(tokenizer.encode(c)) != c})
    if unknown or len(ids) != len(text):
        raise ValueError(
            f"text has characters {unknown} that this model never learned to say; use the characters of its "
            f"training texts ({tokenizer.decode(list(range(min(tokenizer.n_base, 40))))!r})."
        )
    if len(ids) > block_size:
        raise ValueError(
            f"text has {len(ids)} characters, more than the model reads at once ({block_size}); say it in parts."
        )
    return ids


@torch.no_grad()
def speak(
    model: TextToMel,
    tokenizer: Tokenizer,
    text: str,
    speed: float = 1.0,
    n_iter: int = 64,
    momentum: float = 0.99,
    seed: int = 0,
) -> Speech:
    """Say `text` with `model` (in eval mode); `speed` > 1 talks faster; Griffin-Lim runs `n_iter` iterations."""
    ids = torch.tensor([encode_text(tokenizer, text, model.encoder.config.block_size)])
    start = time.perf_counter()
    frames, _ = model.synthesise(ids, torch.ones_like(ids, dtype=torch.bool), speed=speed)
    features = frames[0].T.float()  # (n_mels, T)
    middle = time.perf_counter()
    config = model.config.mel_config()
    generator = torch.Generator().manual_seed(seed)
    wave = features_to_wave(features, config, n_iter=n_iter, momentum=momentum, generator=generator)
    wave = wave * (0.9 / wave.abs().max().clamp_min(1e-6))  # the corpus's peak level (clips are peak-normalised)
    return Speech(wave, features, config.sample_rate, middle - start, time.perf_counter() - middle)
