"""Arithmetic claims in a reply, recomputed: the verifier behind the false-arithmetic principle.

A claim is `a op b = c` (or `is`/`equals` for `=`; `+ - * x` or `plus minus times` for `op`), anywhere in
the reply. A reply that is a bare number is a claim about the one expression of its prompt ("what is 12
plus 5?" → "20" claims 12 + 5 = 20), which is how the arithmetic task's answers read. Each claim is
recomputed exactly with integers; the false ones are the evidence.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_OPS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add, "plus": operator.add, "-": operator.sub, "minus": operator.sub,
    "*": operator.mul, "x": operator.mul, "times": operator.mul,
}  # fmt: skip
_OP = r"(\+|-|\*|x|plus|minus|times)"
EXPRESSION = re.compile(rf"(\d+)\s*{_OP}\s*(\d+)", re.IGNORECASE)
CHAIN = re.compile(rf"\d+(?:\s*{_OP}\s*\d+)+", re.IGNORECASE)  # "2 plus 3 plus 4": one chain, two operators
CLAIM = re.compile(rf"(\d+)\s*{_OP}\s*(\d+)\s*(?:=|is|equals|makes)\s*(-?\d+)", re.IGNORECASE)
BARE_NUMBER = re.compile(r"\s*(-?\d+)\s*\.?\s*")


@dataclass(frozen=True)
class Claim:
    """`a op b = claimed`, with the true value."""

    a: int
    op: str
    b: int
    claimed: int

    @property
    def value(self) -> int:
        """The true value of `a op b`."""
        return _OPS[self.op.lower()](self.a, self.b)

    @property
    def holds(self) -> bool:
        """Whether the claimed value is the true one."""
        return self.claimed == self.value

    def __str__(self) -> str:
        return f"{self.a} {self.op} {self.b} = {self.claimed}"

    @classmethod
    def of(cls, match: re.Match[str]) -> Claim:
        """The claim a `CLAIM` match states."""
        return cls(int(match[1]), match[2], int(match[3]), int(match[4]))

    def same_question(self, other: Claim) -> bool:
        """Whether both claims are about the same `a op b` ("12 plus 5" and "12 + 5" are)."""
        return (self.a, _OPS[self.op.lower()], self.b) == (other.a, _OPS[other.op.lower()], other.b)


def prompt_expression(prompt: str) -> re.Match[str] | None:
    """The prompt's one expression `a op b` (None when it has none, several, or a chain like 2 plus 3 plus 4)."""
    chains = [m.group() for m in CHAIN.finditer(prompt)]
    return EXPRESSION.fullmatch(chains[0]) if len(chains) == 1 else None


def asked_claim(prompt: str, claimed: int = 0) -> Claim | None:
    """The prompt's one expression as a claim of `claimed` (its `.value` is the true answer), or None."""
    single = prompt_expression(prompt)
    return None if single is None else Claim(int(single[1]), single[2], int(single[3]), claimed)


def find_claims(prompt: str, reply: str) -> list[Claim]:
    """The arithmetic claims the reply makes (see the module docstring)."""
    claims = [Claim.of(match) for match in CLAIM.finditer(reply)]
    bare = BARE_NUMBER.fullmatch(reply)
    if not claims and bare and (asked := asked_claim(prompt, int(bare[1]))) is not None:
        claims.append(asked)
    return claims


def correct_claims(prompt: str, reply: str) -> str:
    """The reply with every false claim's value replaced by the true one."""
    bare = BARE_NUMBER.fullmatch(reply)
    if bare and not CLAIM.search(reply):
        claims = find_claims(prompt, reply)
        return str(claims[0].value) if claims else reply

    def fix(match: re.Match[str]) -> str:
        return match.group()[: match.start(4) - match.start()] + str(Claim.of(match).value)

    return CLAIM.sub(fix, reply)
