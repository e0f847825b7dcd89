"""Word and character error rates: edit distance between a transcript and its reference, over words or characters.

WER = (S + D + I) / N: substitutions, deletions and insertions of the cheapest alignment (Levenshtein
distance) of the hypothesis to the reference, over the reference's N words; CER is the same over characters
(spaces removed, so that scripts written without spaces, like Chinese, are compared character by character).
Corpus rates sum the errors and the reference lengths over all clips before dividing (not a mean of rates).
"""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance: the fewest substitutions, deletions and insertions turning `ref` into `hyp`."""
    previous = list(range(len(hyp) + 1))  # distances from ref[:0] to each prefix of hyp
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edits, reference words) of one transcript."""
    words = ref.split()
    return edit_distance(words, hyp.split()), len(words)


def char_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(character edits, reference characters) of one transcript, spaces ignored."""
    chars = ref.replace(" ", "")
    return edit_distance(chars, hyp.replace(" ", "")), len(chars)


def error_rate(pairs: Sequence[tuple[int, int]]) -> float:
    """Σ edits / Σ reference lengths of (edits, length) pairs (0 for an empty reference set)."""
    total = sum(n for _, n in pairs)
    return sum(e for e, _ in pairs) / total if total else 0.0
