"""String reversal: "reverse: stone" → "enots"."""

from __future__ import annotations

import random
import string

from minigpt.tasks.base import Example, Task
from minigpt.utils.errors import ConfigError

_PREFIX = "reverse: "


class Reversal(Task):
    """Reverse a random lowercase string of `min_len`..`max_len` letters; exact match.

    Reversal cannot be solved by continuing familiar text: every output character must be copied from
    the prompt at a mirrored offset, so it tests attention-based copying (an "induction" ability).
    """

    name = "reversal"

    def __init__(
        self, seed: int = 0, min_len: int = 3, max_len: int = 6, alphabet: str = string.ascii_lowercase
    ) -> None:
        super().__init__(seed)
        if not 1 <= min_len <= max_len:
            raise ConfigError(f"task min_len={min_len}, max_len={max_len}: need 1 ≤ min_len ≤ max_len.")
        if len(set(alphabet)) < 2:
            raise ConfigError(f"task alphabet={alphabet!r} needs at least two distinct characters.")
        self.min_len, self.max_len, self.alphabet = min_len, max_len, alphabet

    def generate(self, rng: random.Random) -> Example:
        """A random string and its reverse."""
        text = "".join(rng.choice(self.alphabet) for _ in range(rng.randint(self.min_len, self.max_len)))
        return Example(_PREFIX + text, text[::-1])

    def score(self, prompt: str, completion: str) -> float:
        """1.0 if the completion (whitespace trimmed) is the reversed string, else 0.0."""
        if not prompt.startswith(_PREFIX):
            raise ValueError(f"Not a reversal prompt: {prompt!r}.")
        return float(completion.strip() == prompt[len(_PREFIX) :][::-1])
