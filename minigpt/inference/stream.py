"""Streaming decode: text increments from a growing list of token ids, for printing as tokens arrive."""

from __future__ import annotations

from collections.abc import Iterable

from minigpt.tokenizer.base import Tokenizer


class TextStream:
    """Accumulates token ids and hands out only the text that is new and complete.

    One character can span several tokens (a byte-level tokenizer emits UTF-8 bytes one at a time); a
    partial character decodes to U+FFFD, so a trailing U+FFFD is held back until the next token completes it.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = True) -> None:
        self.tokenizer, self.skip_special = tokenizer, skip_special
        self.ids: list[int] = []
        self.emitted = 0  # characters already handed out

    def push(self, ids: Iterable[int]) -> str:
        """Add token ids; return the text they complete (possibly empty)."""
        self.ids.extend(int(i) for i in ids)
        text = self.tokenizer.decode(self.ids, skip_special=self.skip_special)
        if text.endswith("\ufffd"):
            text = text.rstrip("\ufffd")
        new, self.emitted = text[self.emitted :], max(self.emitted, len(text))
        return new

    def flush(self) -> str:
        """Whatever is still held back (e.g. a genuinely invalid byte at the end)."""
        text = self.tokenizer.decode(self.ids, skip_special=self.skip_special)
        new, self.emitted = text[self.emitted :], len(text)
        return new
