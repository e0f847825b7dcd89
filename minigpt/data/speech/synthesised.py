"""`SynthesisedSource`: what every espeak-made data set shares — voices, rates, pitches and noise drawn per clip,
and splits that hold out whole voices and a noise level.

A subclass says only *what* is spoken (`text(rng, split)`: the words espeak reads, the transcript, the language
tag); this class draws *how*: from a seed per (split, index), a voice variant, a speaking rate, a pitch and a
noise level. Training uses `voices` and `snrs` only; validation and test draw half their clips from
`held_out_voices` and, independently, half at the `held_out_snr` level, so every evaluated number can be read per
condition (seen/held-out voice × seen/held-out noise). Kinds: `SpokenDigits` ("4 7 1"), `SpokenNumbers` (1234 as
"one thousand two hundred thirty four"), `SpokenSentences` (the task suite's prompts and replies).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from minigpt.data.speech.corpus import Utterance, render
from minigpt.data.speech.example import SpeechExample, check_split
from minigpt.utils.errors import ConfigError

SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
ESPEAK_LANGUAGE = {"zh": "cmn"}  # our tag → espeak's voice name where they differ
# espeak voice variants (espeak-ng-data/voices/!v) heard in training / only in evaluation
TRAIN_VOICES = (
    "m1",
    "m2",
    "m3",
    "m5",
    "m6",
    "f1",
    "f2",
    "f4",
    "Alex",
    "Andy",
    "Annie",
    "adam",
    "anika",
    "david",
    "linda",
    "max",
)
HELD_OUT_VOICES = ("m4", "m7", "f3", "f5", "Denis", "john")


class Said(NamedTuple):
    """What one example says: the words espeak reads, the transcript, the language tag, and the kind of text
    (`digits`, `number`, `arithmetic prompt`, …: what `evaluate.py eval=speech` groups WER by)."""

    spoken: str
    transcript: str
    language: str
    kind: str


class SynthesisedSource(ABC):
    """Base of the synthesised `SpeechSource`s: subclasses implement `text(rng, split)`.

    Args:
        voices / held_out_voices: espeak voice variants for training / only for evaluation (disjoint).
        snrs / held_out_snr: noise levels in dB (null = clean) for training / only for evaluation.
        rate, pitch: [low, high] ranges (words per minute, 0–100) drawn uniformly per clip.
        seed: the data set's seed (independent of the run's).
        cache_dir: where synthesised clips are cached (null: $MINIGPT_CACHE or ~/.cache/minigpt).
    """

    def __init__(
        self,
        voices: Sequence[str] = TRAIN_VOICES,
        held_out_voices: Sequence[str] = HELD_OUT_VOICES,
        snrs: Sequence[float | None] = (None, 30.0, 20.0),
        held_out_snr: float | None = 15.0,
        rate: Sequence[int] = (140, 200),
        pitch: Sequence[int] = (30, 70),
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        if shared := sorted(set(voices) & set(held_out_voices)):
            raise ConfigError(
                f"Voices {shared} are both in data.voices and data.held_out_voices; held out means unseen."
            )
        if held_out_snr in snrs:
            raise ConfigError(f"data.held_out_snr={held_out_snr} is also in data.snrs; held out means unseen.")
        if not voices or not held_out_voices:
            raise ConfigError(
                "data.voices and data.held_out_voices must each name at least one espeak voice (e.g. m1)."
            )
        self.voices, self.held_out_voices = list(voices), list(held_out_voices)
        self.snrs, self.held_out_snr = list(snrs), held_out_snr
        self.rate, self.pitch = (int(rate[0]), int(rate[1])), (int(pitch[0]), int(pitch[1]))
        self.seed, self.cache_dir = seed, cache_dir

    @abstractmethod
    def text(self, rng: random.Random, split: str) -> Said:
        """What one example of `split` says, drawn from `rng`."""

    def utterance(self, split: str, index: int) -> tuple[Utterance, str, str, bool, bool]:
        """(recipe, transcript, language tag, held-out voice?, held-out noise?) of example `index` of `split`."""
        recipe, said, held_voice, held_noise = self.draw(split, index)
        return recipe, said.transcript, said.language, held_voice, held_noise

    def draw(self, split: str, index: int) -> tuple[Utterance, Said, bool, bool]:
        """(recipe, what it says, held-out voice?, held-out noise?) of example `index` of `split`."""
        rng = random.Random(f"{self.seed}/{split}/{index}")
        said = self.text(rng, split)  # first, so the digits' recipes stay what they were
        held_voice = split != "train" and rng.random() < 0.5
        held_noise = split != "train" and rng.random() < 0.5
        voice = rng.choice(self.held_out_voices if held_voice else self.voices)
        snr = self.held_out_snr if held_noise else rng.choice(self.snrs)
        recipe = Utterance(
            text=said.spoken,
            language=ESPEAK_LANGUAGE.get(said.language, said.language),
            voice=voice,
            rate=rng.randint(*self.rate),
            pitch=rng.randint(*self.pitch),
            snr_db=snr,
            seed=rng.randrange(2**31) + SPLIT_SEEDS[split],
        )
        return recipe, said, held_voice, held_noise

    def examples(self, split: str, n: int | None) -> list[SpeechExample]:
        """`n` examples of `split` (a generator: `n` is required)."""
        check_split(split)
        if n is None:
            raise ConfigError("data.num_train is null, but synthesised speech is generated: give a number (e.g. 4000).")
        out = []
        for i in range(n):
            recipe, said, held_voice, held_noise = self.draw(split, i)
            audio = render(recipe, self.cache_dir)
            voice, snr = recipe.voice or "default", recipe.snr_db
            text, language, kind = said.transcript, said.language, said.kind
            out.append(SpeechExample(audio, text, language, voice, snr, held_voice, held_noise, kind))
        return out
