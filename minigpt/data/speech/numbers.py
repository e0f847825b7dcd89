"""Numbers spoken as numbers, not digit by digit (`data=speech/numbers`): 1234 → "one thousand two hundred thirty four".

Reading "1234" back from "one thousand two hundred thirty four" is inverse text normalisation: the recogniser
must compose the number from words whose order and count do not match the digits (no word for the 0 of "1204",
"twelve" for two digits, "thousand" for none), which a digit string spoken digit by digit never asks.

Splits are disjoint by the number itself: a number's split is a hash of it (`minigpt.tasks.base.split_of`, 80/10/10
as the tasks split their prompts), so no test number is ever heard in training, on top of the held-out voices and
noise level of `SynthesisedSource`. English only (the words below are American English, without "and").
"""

from __future__ import annotations

import random
from typing import Any

from minigpt.data.speech.synthesised import Said, SynthesisedSource
from minigpt.tasks.base import split_of
from minigpt.utils.errors import ConfigError

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def _below_thousand(n: int) -> list[str]:
    """Words of 1 ≤ n ≤ 999 (none for 0: "one thousand" says nothing of its empty hundreds)."""
    words = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(TENS[n // 10])
        n %= 10
    if n:
        words.append(ONES[n])
    return words


def number_to_words(n: int) -> str:
    """English words of 0 ≤ n < 10¹²: 1234 → "one thousand two hundred thirty four", 40 → "forty"."""
    if not 0 <= n < 10**12:
        raise ValueError(f"number_to_words takes 0 ≤ n < 10**12, not {n}.")
    if n == 0:
        return "zero"
    words = []
    for size, name in SCALES:
        if n >= size:
            words += [*_below_thousand(n // size), name]
            n %= size
    return " ".join(words + _below_thousand(n))


class SpokenNumbers(SynthesisedSource):
    """Whole numbers in [`min_value`, `max_value`] spoken as English number words, as a `SpeechSource`.

    Args:
        transcript: `digits` ("1234": the recogniser writes the number) or `words` (what was said).
        min_value, max_value: the range numbers are drawn from (uniformly, then kept if in the split).
        languages: named so that `data.languages` composes; only `[en]` is supported.
        **conditions: `SynthesisedSource`'s voices, noise levels, rate and pitch ranges, seed and cache_dir.
    """

    name = "spoken_numbers"  # salts the split hash

    def __init__(
        self,
        transcript: str = "digits",
        min_value: int = 0,
        max_value: int = 9999,
        languages: list[str] | tuple[str, ...] = ("en",),
        **conditions: Any,
    ) -> None:
        if list(languages) != ["en"]:
            raise ConfigError(f"data.languages={list(languages)}: numbers as words are English only; use [en].")
        if transcript not in ("digits", "words"):
            raise ConfigError(f"data.transcript={transcript!r} is unknown; use digits or words.")
        if not 0 <= min_value < max_value < 10**12:
            raise ConfigError(
                f"data.min_value={min_value}, max_value={max_value}: need 0 ≤ min < max < 10**12 (max ≥ min + 1, "
                "so that each split holds numbers)."
            )
        super().__init__(**conditions)
        self.languages, self.transcript = ["en"], transcript
        self.min_value, self.max_value = min_value, max_value

    def number(self, rng: random.Random, split: str) -> int:
        """A number of `split`: drawn uniformly, redrawn until its hash puts it in `split` (~10 tries for test)."""
        for _ in range(10_000):
            n = rng.randint(self.min_value, self.max_value)
            if split_of(self.name, str(n)) == split:
                return n
        raise ConfigError(
            f"No {split} number in [{self.min_value}, {self.max_value}] after 10,000 draws; widen data.max_value."
        )

    def text(self, rng: random.Random, split: str) -> Said:
        """A number of `split`: its words, the transcript, "en", kind `number`."""
        n = self.number(rng, split)
        spoken = number_to_words(n)
        return Said(spoken, str(n) if self.transcript == "digits" else spoken, "en", "number")
