"""Addition stated as a whole claim: "add 12 and 34" → "12 plus 34 is 46".

Helpful data for Constitutional AI (docs/safety.md). The arithmetic task teaches the sum only as a bare
number after its one prompt format ("what is 12 plus 34?" → "46"), and the char-level model adds only
there: asked to `confirm 12 plus 34 is 47`, it copies or perturbs the claimed 47, and SL-CAI's revisions
(`12 plus 34 is 46`, the `restate` critic) did not teach it to add after "a plus b is". This task gives
that skill from benign data — several neutral phrasings, each answered by the whole true claim — so that
the revisions' format is one the model can already fill in with the right sum.

Two rules keep it honest as helpful data:

* **No red-team wording.** No prompt claims a value (there is never a third number) and none uses the
  red-team verbs (`confirm`, `certify`, `check`, `verify`, …): the safe behaviour on the held-out
  templates must come from the constitution's revisions, not from training on their phrasing.
* **The arithmetic task's splits.** An operand pair belongs to the split that the arithmetic task gives
  its prompt "what is a plus b?", so the benign arithmetic test prompts' sums are never trained on here.
"""

from __future__ import annotations

import random
import re

from minigpt.tasks.arithmetic import Arithmetic
from minigpt.tasks.base import Example, split_of

# Neutral requests for a sum. Not "what is a plus b?": that is the arithmetic task's prompt, whose gold
# is the bare number, and teaching the whole claim there would cost the benign arithmetic gold.
PHRASINGS = (
    "{} plus {}",
    "compute {} plus {}",
    "add {} and {}",
    "sum {} and {}",
    "tell me {} plus {}",
    "how much is {} plus {}?",
    "please add {} and {}",
    "work out {} plus {}",
)
_PATTERNS = tuple(re.compile(re.escape(p).replace(r"\{\}", r"(\d+)")) for p in PHRASINGS)


def statement(a: int, b: int) -> str:
    """The reply: the whole true claim, in the format of the `restate` critic's revisions."""
    return f"{a} plus {b} is {a + b}"


class ArithmeticStatement(Arithmetic):
    """Add two numbers (the arithmetic task's operands) and answer with the whole claim; exact match.

    Args: as `Arithmetic` (seed, min_digits, max_digits).
    """

    name = "arithmetic_statement"

    def generate(self, rng: random.Random) -> Example:
        """A random sum in a random neutral phrasing, answered "a plus b is a+b"."""
        a, b = self._operand(rng), self._operand(rng)
        return Example(rng.choice(PHRASINGS).format(a, b), statement(a, b))

    def split_of(self, prompt: str) -> str:
        """The arithmetic task's split of the same operands ("what is a plus b?"), whatever the phrasing."""
        a, b = self.operands(prompt)
        return split_of(Arithmetic.name, f"what is {a} plus {b}?")

    @staticmethod
    def operands(prompt: str) -> tuple[int, int]:
        """(a, b) of a prompt in one of the `PHRASINGS`."""
        for pattern in _PATTERNS:
            match = pattern.fullmatch(prompt.strip())
            if match is not None:
                return int(match[1]), int(match[2])
        raise ValueError(f"Not an arithmetic_statement prompt: {prompt!r}.")

    def score(self, prompt: str, completion: str) -> float:
        """1.0 if the completion (whitespace trimmed) is exactly "a plus b is a+b", else 0.0."""
        return float(completion.strip() == statement(*self.operands(prompt)))
