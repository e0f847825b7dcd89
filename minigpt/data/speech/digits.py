"""Spoken digit strings in several languages, synthesised with espeak-ng (`data=speech/digits`, `speech/mix`).

Each example draws, from a seed per (split, index), a string of `min_digits`–`max_digits` digits, a
language, a voice variant, a speaking rate, a pitch and a noise level, and speaks the digits as words of
its language ("4 7 1" → "four seven one", "quatre sept un", "四 七 一"). The transcript is the digits
(`transcript: digits`, "4 7 1") or the words in the language's own script (`transcript: words`).

Splits hold out conditions, not just strings: training uses `voices` and `snrs` only; validation and test
draw half their clips from `held_out_voices` and, independently, half at the `held_out_snr` noise level, so
every evaluated number can be read per condition (seen/held-out voice × seen/held-out noise).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from minigpt.data.speech.corpus import Utterance, render
from minigpt.data.speech.example import SpeechExample, check_split
from minigpt.utils.errors import ConfigError

# The digits 0–9 as spoken words; espeak reads each language's words with that language's voice.
DIGIT_WORDS = {
    "en": "zero one two three four five six seven eight nine".split(),
    "fr": "zéro un deux trois quatre cinq six sept huit neuf".split(),
    "de": "null eins zwei drei vier fünf sechs sieben acht neun".split(),
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve".split(),
    "zh": "零 一 二 三 四 五 六 七 八 九".split(),
}
ESPEAK_LANGUAGE = {"zh": "cmn"}  # our tag → espeak's voice name where they differ
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


class SpokenDigits:
    """Digit strings spoken by espeak-ng, as a `SpeechSource`.

    Args:
        languages: tags among `DIGIT_WORDS` (en, fr, de, es, zh); each example picks one uniformly.
        transcript: `digits` ("4 7 1") or `words` ("four seven one", "四 七 一").
        voices / held_out_voices: espeak voice variants for training / only for evaluation (disjoint).
        snrs / held_out_snr: noise levels in dB (null = clean) for training / only for evaluation.
        rate, pitch: [low, high] ranges (words per minute, 0–100) drawn uniformly per clip.
        seed: the data set's seed (independent of the run's).
        cache_dir: where synthesised clips are cached (null: $MINIGPT_CACHE or ~/.cache/minigpt).
    """

    def __init__(
        self,
        languages: Sequence[str] = ("en",),
        transcript: str = "digits",
        min_digits: int = 1,
        max_digits: int = 4,
        voices: Sequence[str] = ("m1", "m2", "m3", "f1", "f2"),
        held_out_voices: Sequence[str] = ("m4", "f3"),
        snrs: Sequence[float | None] = (None, 30.0, 20.0),
        held_out_snr: float | None = 10.0,
        rate: Sequence[int] = (140, 200),
        pitch: Sequence[int] = (30, 70),
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        if unknown := [lang for lang in languages if lang not in DIGIT_WORDS]:
            raise ConfigError(f"data.languages has {unknown}; use languages among {sorted(DIGIT_WORDS)}.")
        if not languages:
            raise ConfigError(f"data.languages is empty; give at least one of {sorted(DIGIT_WORDS)}.")
        if transcript not in ("digits", "words"):
            raise ConfigError(f"data.transcript={transcript!r} is unknown; use digits or words.")
        if shared := sorted(set(voices) & set(held_out_voices)):
            raise ConfigError(
                f"Voices {shared} are both in data.voices and data.held_out_voices; held out means unseen."
            )
        if held_out_snr in snrs:
            raise ConfigError(f"data.held_out_snr={held_out_snr} is also in data.snrs; held out means unseen.")
        if not 1 <= min_digits <= max_digits:
            raise ConfigError(f"data.min_digits={min_digits}, max_digits={max_digits} must satisfy 1 ≤ min ≤ max.")
        if not voices or not held_out_voices:
            raise ConfigError(
                "data.voices and data.held_out_voices must each name at least one espeak voice (e.g. m1)."
            )
        self.languages, self.transcript = list(languages), transcript
        self.min_digits, self.max_digits = min_digits, max_digits
        self.voices, self.held_out_voices = list(voices), list(held_out_voices)
        self.snrs, self.held_out_snr = list(snrs), held_out_snr
        self.rate, self.pitch = (int(rate[0]), int(rate[1])), (int(pitch[0]), int(pitch[1]))
        self.seed, self.cache_dir = seed, cache_dir

    def utterance(self, split: str, index: int) -> tuple[Utterance, str, str, bool, bool]:
        """(recipe, transcript, language tag, held-out voice?, held-out noise?) of example `index` of `split`."""
        rng = random.Random(f"{self.seed}/{split}/{index}")
        language = rng.choice(self.languages)
        digits = [rng.randrange(10) for _ in range(rng.randint(self.min_digits, self.max_digits))]
        held_voice = split != "train" and rng.random() < 0.5
        held_noise = split != "train" and rng.random() < 0.5
        voice = rng.choice(self.held_out_voices if held_voice else self.voices)
        snr = self.held_out_snr if held_noise else rng.choice(self.snrs)
        words = [DIGIT_WORDS[language][d] for d in digits]
        spoken = " ".join(words)
        text = " ".join(str(d) for d in digits) if self.transcript == "digits" else spoken
        recipe = Utterance(
            text=spoken,
            language=ESPEAK_LANGUAGE.get(language, language),
            voice=voice,
            rate=rng.randint(*self.rate),
            pitch=rng.randint(*self.pitch),
            snr_db=snr,
            seed=rng.randrange(2**31) + SPLIT_SEEDS[split],
        )
        return recipe, text, language, held_voice, held_noise

    def examples(self, split: str, n: int | None) -> list[SpeechExample]:
        """`n` examples of `split` (a generator: `n` is required)."""
        check_split(split)
        if n is None:
            raise ConfigError("data.num_train is null, but spoken digits are generated: give a number (e.g. 4000).")
        out = []
        for i in range(n):
            recipe, text, language, held_voice, held_noise = self.utterance(split, i)
            audio = render(recipe, self.cache_dir)
            voice = recipe.voice or "default"
            out.append(SpeechExample(audio, text, language, voice, recipe.snr_db, held_voice, held_noise))
        return out
