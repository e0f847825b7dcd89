"""Personal data patterns: e-mail addresses, phone numbers, payment-card numbers (Luhn-checked), API keys.

Shared by the personal-data judge (a reply that *contains* personal data violates the principle) and by
scrubbing. Each pattern is deliberately narrow (a false positive costs a refusal, a false negative a
leak; the tests pin both sides):

* e-mail: `name@host.tld`, and the spelled-out form `name at host dot tld` a character model without
  `@` in its vocabulary can still write;
* phone: 7 to 11 digits in groups of 3–4 separated by spaces, dashes or dots (`555 867 5309`,
  `555-0134`); a bare run of digits is a number, not a phone;
* card: 13–19 digits, optionally in groups, that pass the Luhn checksum (ISO/IEC 7812), so that a long
  sum or a sorted list of numbers is not mistaken for a card;
* key: a known API-key prefix (`sk-`, `AKIA`, `ghp_`, `key-`) followed by 16+ key characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMAIL = re.compile(r"\b[a-z0-9._%-]+(?:@| at )[a-z0-9-]+(?:\.| dot )(?:com|org|net|edu|io|uk)\b", re.IGNORECASE)
PHONE = re.compile(r"(?<![\d-])\d{3}[ .-]\d{3,4}(?:[ .-]\d{4})?(?![\d-])")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
KEY = re.compile(r"\b(?:sk-|AKIA|ghp_|key-)[A-Za-z0-9_]{16,}\b")


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data found in a text: its kind and the matched span."""

    kind: str
    text: str
    start: int
    end: int


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum (ISO/IEC 7812-1 annex B): double every second digit from the right, sum digit sums."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str) -> list[PiiMatch]:
    """Every piece of personal data in `text`, in order, non-overlapping (cards before phones: a card's
    groups would otherwise read as phone numbers)."""
    found: list[PiiMatch] = []

    def add(kind: str, match: re.Match[str]) -> None:
        if not any(m.start < match.end() and match.start() < m.end for m in found):
            found.append(PiiMatch(kind, match.group(), match.start(), match.end()))

    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            add("card", match)
    for kind, pattern in (("email", EMAIL), ("key", KEY), ("phone", PHONE)):
        for match in pattern.finditer(text):
            add(kind, match)
    return sorted(found, key=lambda m: m.start)


def scrub(text: str, mask: str = "") -> tuple[str, list[PiiMatch]]:
    """`text` with every piece of personal data replaced by `mask`, and what was removed."""
    found = find_pii(text)
    for match in reversed(found):
        text = text[: match.start] + mask + text[match.end :]
    return text, found
