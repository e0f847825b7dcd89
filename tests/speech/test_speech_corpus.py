"""The synthesised corpus: espeak-ng through ctypes, 16 kHz clips, cached on disk, seeded noise."""

from __future__ import annotations

import numpy as np
import pytest

from minigpt.data.speech import corpus
from minigpt.data.speech.corpus import SAMPLE_RATE, Utterance, add_noise, render
from minigpt.data.speech.espeak import espeak
from minigpt.utils.errors import ConfigError


def test_synthesis_in_three_languages_with_word_alignment():
    engine = espeak()
    for text, language in [("four seven one", "en"), ("quatre sept un", "fr"), ("四 七 一", "cmn")]:
        out = engine.synthesize(text, language, voice="m3", rate=160, pitch=40)
        assert out.sample_rate == 22_050 and 0.3 < len(out.samples) / out.sample_rate < 3.0
        assert len(out.words) == 3 and [ms for _, ms in out.words] == sorted(ms for _, ms in out.words)
    assert engine.phonemes("seven", "en").startswith("s")
    with pytest.raises(ConfigError, match="Unknown espeak voice"):
        engine.synthesize("one", "en", voice="nobody")
    with pytest.raises(ConfigError, match="no language"):
        engine.synthesize("one", "xx-nowhere")


def test_render_is_cached_and_noise_is_seeded(tmp_path, monkeypatch):
    u = Utterance("three", "en", "f2", 170, 60, snr_db=10.0, seed=5)
    first = render(u, tmp_path)
    assert first.dtype == np.float32 and 0.2 < len(first) / SAMPLE_RATE < 2.0
    calls = []
    monkeypatch.setattr(corpus, "espeak", lambda: calls.append(1))  # a second render must not synthesise
    np.testing.assert_array_equal(render(u, tmp_path), first)
    assert not calls
    clean = render(Utterance("three", "en", "f2", 170, 60), tmp_path)
    noise = first - clean
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert abs(snr - 10.0) < 0.5
    assert not np.array_equal(add_noise(clean, 10.0, 6), first)
