"""Two spoken words for the speech tests: "yes" and "no" by several espeak voices, held-out voices in test."""

from __future__ import annotations

import random

from minigpt.data.speech.corpus import Utterance, render
from minigpt.data.speech.example import SpeechExample

TRAIN_VOICES = ["m1", "m2", "m3", "f1", "f2", "f4"]
TEST_VOICES = ["m4", "f3"]


class TwoWords:
    """ "yes" / "no" at random rates and pitches; val and test use voices training never heard (chance: 50 %)."""

    def __init__(self, cache_dir: str | None = None) -> None:
        self.cache_dir = cache_dir

    def examples(self, split: str, n: int | None) -> list[SpeechExample]:
        rng = random.Random(split)
        voices = TRAIN_VOICES if split == "train" else TEST_VOICES
        out = []
        for i in range(n or 32):
            word, voice = ("yes", "no")[i % 2], rng.choice(voices)
            clip = render(Utterance(word, "en", voice, rng.randint(140, 220), rng.randint(20, 80)), self.cache_dir)
            out.append(SpeechExample(clip, word, "en", voice, None, split != "train", False))
        return out
