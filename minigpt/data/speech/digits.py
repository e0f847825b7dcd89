"""Spoken digit strings in several languages, synthesised with espeak-ng (`data=speech/digits`, `speech/mix`).

Each example draws, from a seed per (split, index), a string of `min_digits`–`max_digits` digits and a
language, and speaks the digits as words of its language ("4 7 1" → "four seven one", "quatre sept un",
"四 七 一"); voice, rate, pitch and noise are drawn by `SynthesisedSource`, which holds out voices and a noise
level. The transcript is the digits (`transcript: digits`, "4 7 1") or the words in the language's own script
(`transcript: words`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from minigpt.data.speech.synthesised import Said, SynthesisedSource
from minigpt.utils.errors import ConfigError

# The digits 0–9 as spoken words; espeak reads each language's words with that language's voice.
DIGIT_WORDS = {
    "en": "zero one two three four five six seven eight nine".split(),
    "fr": "zéro un deux trois quatre cinq six sept huit neuf".split(),
    "de": "null eins zwei drei vier fünf sechs sieben acht neun".split(),
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve".split(),
    "zh": "零 一 二 三 四 五 六 七 八 九".split(),
}


class SpokenDigits(SynthesisedSource):
    """Digit strings spoken by espeak-ng, as a `SpeechSource`.

    Args:
        languages: tags among `DIGIT_WORDS` (en, fr, de, es, zh); each example picks one uniformly.
        transcript: `digits` ("4 7 1") or `words` ("four seven one", "四 七 一").
        min_digits, max_digits: the string's length range.
        **conditions: `SynthesisedSource`'s voices, noise levels, rate and pitch ranges, seed and cache_dir.
    """

    def __init__(
        self,
        languages: Sequence[str] = ("en",),
        transcript: str = "digits",
        min_digits: int = 1,
        max_digits: int = 4,
        **conditions: Any,
    ) -> None:
        if unknown := [lang for lang in languages if lang not in DIGIT_WORDS]:
            raise ConfigError(f"data.languages has {unknown}; use languages among {sorted(DIGIT_WORDS)}.")
        if not languages:
            raise ConfigError(f"data.languages is empty; give at least one of {sorted(DIGIT_WORDS)}.")
        if transcript not in ("digits", "words"):
            raise ConfigError(f"data.transcript={transcript!r} is unknown; use digits or words.")
        if not 1 <= min_digits <= max_digits:
            raise ConfigError(f"data.min_digits={min_digits}, max_digits={max_digits} must satisfy 1 ≤ min ≤ max.")
        super().__init__(**conditions)
        self.languages, self.transcript = list(languages), transcript
        self.min_digits, self.max_digits = min_digits, max_digits

    def text(self, rng: random.Random, split: str) -> Said:
        """A random digit string: the digits as words, the transcript, the language."""
        language = rng.choice(self.languages)
        digits = [rng.randrange(10) for _ in range(rng.randint(self.min_digits, self.max_digits))]
        spoken = " ".join(DIGIT_WORDS[language][d] for d in digits)
        transcript = " ".join(map(str, digits)) if self.transcript == "digits" else spoken
        return Said(spoken, transcript, language, "digits")
