"""Sorting numbers: "sort: 42 7 19" → "7 19 42"."""

from __future__ import annotations

import random

from minigpt.tasks.base import Example, Task
from minigpt.utils.errors import ConfigError

_PREFIX = "sort: "


class Sorting(Task):
    """Sort `min_items`..`max_items` integers in [0, `max_value`] ascending; exact match, space-separated."""

    name = "sorting"

    def __init__(self, seed: int = 0, min_items: int = 3, max_items: int = 5, max_value: int = 99) -> None:
        super().__init__(seed)
        if not 2 <= min_items <= max_items:
            raise ConfigError(f"task min_items={min_items}, max_items={max_items}: need 2 ≤ min_items ≤ max_items.")
        if max_value < 1:
            raise ConfigError(f"task max_value={max_value} must be at least 1.")
        self.min_items, self.max_items, self.max_value = min_items, max_items, max_value

    def generate(self, rng: random.Random) -> Example:
        """A random list and its sorted form."""
        items = [rng.randint(0, self.max_value) for _ in range(rng.randint(self.min_items, self.max_items))]
        return Example(_PREFIX + " ".join(map(str, items)), " ".join(map(str, sorted(items))))

    def score(self, prompt: str, completion: str) -> float:
        """1.0 if the completion lists the prompt's numbers in ascending order (any spacing), else 0.0."""
        if not prompt.startswith(_PREFIX):
            raise ValueError(f"Not a sorting prompt: {prompt!r}.")
        gold = sorted(int(x) for x in prompt[len(_PREFIX) :].split())
        return float(completion.split() == [str(x) for x in gold])
