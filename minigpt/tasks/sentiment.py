"""Positive-sentiment continuation: "happily: the old mill" → "is lovely and bright", scored by VADER.

The one open-ended task: many completions are right, so the gold score is a sentiment measurement
rather than an exact match. VADER (Hutto & Gilbert 2014) is a rule-based scorer built on a
human-rated lexicon of ~7,500 words; its `compound` score lies in [-1, 1]. It ships inside the pinned
pip package `vaderSentiment` (a main dependency), so nothing is downloaded at run time.

The scorer is exploitable by design ("love love love" scores 1.0 whatever the prompt): that is what a
learned policy does to an imperfect reward, and the RL stages measure it.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any

from minigpt.tasks.base import Example, Task
from minigpt.utils.errors import ConfigError

_PREFIX = "happily: "
_DETERMINERS = ("the", "my", "our", "your", "this")
_ADJECTIVES = (
    "old", "grey", "little", "tall", "quiet", "long", "small", "far", "narrow", "high", "low", "wide",
)  # fmt: skip
_NOUNS = (
    "house", "road", "river", "mill", "garden", "bridge", "city", "field", "ship", "tower",
    "forest", "hill", "window", "door", "market", "harbour", "valley", "church", "kitchen", "letter",
)  # fmt: skip
_VERBS = ("is", "looks", "seems", "was", "feels")
_POSITIVE = (
    "lovely", "happy", "great", "wonderful", "beautiful", "kind", "merry", "bright", "good", "gentle",
)  # fmt: skip


@cache
def _analyzer() -> Any:
    """VADER's analyzer, loaded once (it reads its lexicon from the installed package)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(text: str) -> float:
    """VADER's normalised compound sentiment of `text`, in [-1, 1]."""
    return float(_analyzer().polarity_scores(text)["compound"])


class Sentiment(Task):
    """Continue a short phrase with positive sentiment.

    score = clip((c + 1) / (1 + target), 0, 1) with c the VADER compound of the completion: a
    completion at least as positive as `target` scores 1.0, a neutral one 1/(1 + target), the most
    negative one 0. The linear ramp (rather than a threshold) gives an RL policy a gradient to climb.
    An empty completion scores 0: saying nothing is not a continuation.
    """

    name = "sentiment"

    def __init__(self, seed: int = 0, target: float = 0.5) -> None:
        super().__init__(seed)
        if not 0.0 < target <= 1.0:
            raise ConfigError(f"task target={target} must be in (0, 1], e.g. 0.5.")
        self.target = target

    def generate(self, rng: random.Random) -> Example:
        """A neutral subject and a positive continuation built from VADER-positive words."""
        subject = f"{rng.choice(_DETERMINERS)} {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        first, second = rng.sample(_POSITIVE, 2)
        return Example(_PREFIX + subject, f"{rng.choice(_VERBS)} {first} and {second}")

    def score(self, prompt: str, completion: str) -> float:
        """Linear in VADER's compound score of the completion, saturating at `target` (see class doc)."""
        if not prompt.startswith(_PREFIX):
            raise ValueError(f"Not a sentiment prompt: {prompt!r}.")
        if not completion.strip():
            return 0.0
        return min(1.0, max(0.0, (vader_compound(completion) + 1.0) / (1.0 + self.target)))
