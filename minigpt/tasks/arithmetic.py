"""Multi-digit addition: "what is 12 plus 345?" → "357"."""

from __future__ import annotations

import random
import re

from minigpt.tasks.base import Example, Task
from minigpt.utils.errors import ConfigError

# Words rather than "+" and "=": the default char tokenizer, learned from Shakespeare, has neither symbol.
_PROMPT = re.compile(r"what is (\d+) plus (\d+)\?")


class Arithmetic(Task):
    """Add two numbers of `min_digits`..`max_digits` digits each; exact match of the decimal sum.

    2-digit operands give 10,000 distinct prompts (8,000 for training); the prompt plus answer is about
    25 characters, which fits the 64-token context of the default char model.
    """

    name = "arithmetic"

    def __init__(self, seed: int = 0, min_digits: int = 1, max_digits: int = 2) -> None:
        super().__init__(seed)
        if not 1 <= min_digits <= max_digits:
            raise ConfigError(
                f"task min_digits={min_digits}, max_digits={max_digits}: need 1 ≤ min_digits ≤ max_digits."
            )
        self.min_digits, self.max_digits = min_digits, max_digits

    def _operand(self, rng: random.Random) -> int:
        digits = rng.randint(self.min_digits, self.max_digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)

    def generate(self, rng: random.Random) -> Example:
        """A random sum of two operands."""
        a, b = self._operand(rng), self._operand(rng)
        return Example(f"what is {a} plus {b}?", str(a + b))

    def score(self, prompt: str, completion: str) -> float:
        """1.0 if the completion (whitespace trimmed) is the sum, else 0.0."""
        match = _PROMPT.fullmatch(prompt.strip())
        if match is None:
            raise ValueError(f"Not an arithmetic prompt: {prompt!r}.")
        return float(completion.strip() == str(int(match[1]) + int(match[2])))
