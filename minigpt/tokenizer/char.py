"""Character-level tokenizer: one id per Unicode character seen in the training text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minigpt.tokenizer.base import DEFAULT_SPECIAL_TOKENS, Tokenizer


class CharTokenizer(Tokenizer):
    """Vocabulary = the sorted set of characters of a corpus (nanoGPT's Shakespeare tokenizer).

    Characters never seen in training map to `unk` (the first character of the vocabulary, usually a
    newline or space) rather than failing: a char model simply cannot represent them.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS) -> None:
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        super().__init__(special_tokens)

    @classmethod
    def train(cls, text: str, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS) -> CharTokenizer:
        """Build the vocabulary from the characters of `text`."""
        return cls(sorted(set(text)), special_tokens)

    @property
    def n_base(self) -> int:
        """Number of distinct characters."""
        return len(self.chars)

    def encode_ordinary(self, text: str) -> list[int]:
        """One id per character; unseen characters become id 0."""
        index = self.index
        return [index.get(c, 0) for c in text]

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Characters of `ids`, as UTF-8."""
        return "".join(self.chars[i] for i in ids).encode("utf-8")

    def state(self) -> dict[str, Any]:
        """The character list."""
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_state(cls, state: dict[str, Any], special_tokens: Sequence[str]) -> CharTokenizer:
        """Rebuild from the character list."""
        return cls(list(state["chars"]), special_tokens)
