"""Positive-sentiment continuation: "happily: the old mill" → "is lovely and bright", scored by VADER.

`tone` chooses the demonstrations (the gold score is the same either way):

* `positive` (default): every demonstration is positive, so SFT alone already scores ≈ 1.0.
* `mixed`: a third each of positive ("is happy and kind"), neutral ("is plain and wooden") and negative
  ("is dull and grey") continuations. This is the IMDB continuation setup of RLHF papers (Ziegler et al.
  2019; Rafailov et al. 2023 §6.1): SFT teaches the format with replies of every tone, and the preference
  and RL stages must push the policy toward positive ones, which the gold score measures.

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
# VADER rates each of these 0 (neutral) or below 0 (negative) alone and in any "X and Y" pair (tested).
_NEUTRAL = ("plain", "still", "brown", "square", "flat", "round", "wooden", "silent", "distant", "stone")
_NEGATIVE = ("sad", "dull", "grim", "cruel", "ugly", "awful", "dreary", "lonely", "bitter", "miserable")
_TONES = {"positive": _POSITIVE, "neutral": _NEUTRAL, "negative": _NEGATIVE}


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

    Args:
        target: the VADER compound that earns the full score.
        tone: `positive` (every demonstration positive) or `mixed` (positive, neutral and negative
            demonstrations in equal parts; see the module docstring).

    score = clip((c + 1) / (1 + target), 0, 1) with c the VADER compound of the completion: a
    completion at least as positive as `target` scores 1.0, a neutral one 1/(1 + target), the most
    negative one 0. The linear ramp (rather than a threshold) gives an RL policy a gradient to climb.
    An empty completion scores 0: saying nothing is not a continuation.
    """

    name = "sentiment"

    def __init__(self, seed: int = 0, target: float = 0.5, tone: str = "positive") -> None:
        super().__init__(seed)
        if not 0.0 < target <= 1.0:
            raise ConfigError(f"task target={target} must be in (0, 1], e.g. 0.5.")
        if tone not in ("positive", "mixed"):
            raise ConfigError(f"task tone={tone!r} is unknown; use positive or mixed.")
        self.target, self.tone = target, tone

    def generate(self, rng: random.Random) -> Example:
        """A neutral subject and a continuation of two words of one tone (always positive unless mixed)."""
        subject = f"{rng.choice(_DETERMINERS)} {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        # The tone is drawn only when mixed, so tone=positive keeps the original examples exactly.
        words = _TONES[rng.choice(sorted(_TONES))] if self.tone == "mixed" else _POSITIVE
        first, second = rng.sample(words, 2)
        return Example(_PREFIX + subject, f"{rng.choice(_VERBS)} {first} and {second}")

    def score(self, prompt: str, completion: str) -> float:
        """Linear in VADER's compound score of the completion, saturating at `target` (see class doc)."""
        if not prompt.startswith(_PREFIX):
            raise ValueError(f"Not a sentiment prompt: {prompt!r}.")
        if not completion.strip():
            return 0.0
        return min(1.0, max(0.0, (vader_compound(completion) + 1.0) / (1.0 + self.target)))
