"""Short sentences from the task suite, spoken (`data=speech/sentences`): "what is 12 plus 34?", "sort: 42 7 19",
"reverse: stone" and their replies ("46", "7 19 42", "enots"), transcribed as written.

These are the texts a chat model of this project was fine-tuned on (`data=tasks/mix`), so a speech model started
from it (`init_from=<sft>/model`) already knows how a transcript goes on; from scratch it must learn that too.

What espeak reads (`spoken_form`) is the sentence as a person would say it: numbers as number words
("12" → "twelve", `minigpt.data.speech.numbers`), the templates' own words as words, and every other token —
the reversal task's random letters — spelled out by letter names ("stone" → "ess tee oh en ee"), since a random
string has no pronunciation; punctuation is not spoken. The transcript is the written sentence.

Splits are the tasks' own: an example is drawn with `task.generate` and kept only if `task.split_of(prompt)` is
the split asked for, so a test prompt (and the reply to it) never occurs in training, on top of the held-out voices
and noise level of `SynthesisedSource`. English only, as the task suite is.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from minigpt.data.speech.numbers import number_to_words
from minigpt.data.speech.synthesised import Said, SynthesisedSource
from minigpt.tasks.base import Task
from minigpt.utils.errors import ConfigError

PARTS = ("prompt", "reply")
# The words of the task templates (arithmetic, sorting, reversal): spoken as words, not spelled.
TEMPLATE_WORDS = frozenset({"what", "is", "plus", "sort", "reverse"})
_NAMES = "ay bee see dee ee ef gee aitch eye jay kay el em en oh pee cue ar ess tee you vee double-you ex why zee"
LETTER_NAMES = dict(zip("abcdefghijklmnopqrstuvwxyz", _NAMES.split()))
_TOKEN = re.compile(r"\d+|[a-z]+")


def spoken_form(text: str) -> str:
    """What espeak reads for a task sentence: numbers as words, template words as words, other letters spelled."""
    words: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if token.isdigit():
            words.append(number_to_words(int(token)))
        elif token in TEMPLATE_WORDS:
            words.append(token)
        else:
            words += [LETTER_NAMES[c] for c in token]
    if not words:
        raise ConfigError(f"The task sentence {text!r} has nothing to say (no letters or digits).")
    return " ".join(words)


class SpokenSentences(SynthesisedSource):
    """Prompts and replies of tasks (`minigpt.tasks`), spoken by espeak-ng and transcribed as written.

    Args:
        tasks: {name: Task}, e.g. the tasks of `data=tasks/mix` (arithmetic, reversal, sorting); each example picks
            one uniformly.
        parts: which side of an example is spoken: `prompt`, `reply`, or both (picked uniformly per example).
        languages: named so that `data.languages` composes; only `[en]` is supported.
        **conditions: `SynthesisedSource`'s voices, noise levels, rate and pitch ranges, seed and cache_dir.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task | None],
        parts: Sequence[str] = PARTS,
        languages: Sequence[str] = ("en",),
        **conditions: Any,
    ) -> None:
        if list(languages) != ["en"]:
            raise ConfigError(f"data.languages={list(languages)}: task sentences are English only; use [en].")
        self.tasks = [task for task in tasks.values() if task is not None]
        if not self.tasks:
            raise ConfigError("data.sources.sentences.tasks is empty; name at least one task (e.g. arithmetic).")
        if not parts or any(p not in PARTS for p in parts):
            raise ConfigError(f"data.parts={list(parts)}: give one or both of {list(PARTS)}.")
        super().__init__(**conditions)
        self.languages, self.parts = ["en"], list(parts)

    def sentence(self, rng: random.Random, split: str) -> tuple[str, str, str]:
        """(the task's name, `prompt` or `reply`, that side of one of the task's `split` examples)."""
        task = rng.choice(self.tasks)
        part = rng.choice(self.parts)
        for _ in range(10_000):
            example = task.generate(rng)
            if task.split_of(example.prompt) == split:
                return task.name, part, example.prompt if part == "prompt" else example.answer
        raise ConfigError(f"Task {task.name!r} drew no {split} prompt in 10,000 tries; widen the task.")

    def text(self, rng: random.Random, split: str) -> Said:
        """A sentence of `split`: as spoken, as written, "en", and its kind (e.g. `sorting reply`)."""
        task, part, written = self.sentence(rng, split)
        return Said(spoken_form(written), written, "en", f"{task} {part}")
