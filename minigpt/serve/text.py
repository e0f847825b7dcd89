"""`ReplyText`: a reply's text as its tokens arrive, cut at the first stop string (OpenAI's `stop`).

OpenAI's API returns the text *before* a stop string, never the stop string itself. While streaming,
the end of the text may be the beginning of a stop string that the next token completes, so that part
is held back until it is known either way (it is sent once it can no longer start a stop string).
"""

from __future__ import annotations

from collections.abc import Sequence

from minigpt.inference.stream import TextStream
from minigpt.tokenizer.base import Tokenizer


class ReplyText:
    """Text increments of one reply: `push(tokens)` while generating, `finish()` at the end."""

    def __init__(self, tokenizer: Tokenizer, stops: list[str]) -> None:
        self.stream = TextStream(tokenizer)  # special tokens (<|end|>, <|eos|>) decode to nothing
        self.stops = stops
        self.text = ""  # everything decoded so far
        self.sent = 0  # characters handed out

    @property
    def token_count(self) -> int:
        """Tokens pushed so far."""
        return len(self.stream.ids)

    def push(self, tokens: Sequence[int]) -> str:
        """Add tokens; return the new text that is certainly part of the reply (possibly empty)."""
        if not tokens:
            return ""
        self.text += self.stream.push(tokens)
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the reply, up to the first stop string."""
        self.text += self.stream.flush()
        return self._release(final=True)

    @property
    def reply(self) -> str:
        """The whole reply so far, up to the first stop string."""
        return self.text[: self._stop_at()]

    def _stop_at(self) -> int:
        """Where the first stop string starts (the text's length if none occurs)."""
        found = [at for at in (self.text.find(stop) for stop in self.stops) if at >= 0]
        return min(found, default=len(self.text))

    def _held_back(self) -> int:
        """Characters at the end of the text that could begin a stop string."""
        return max(
            (
                n
                for stop in self.stops
                for n in range(min(len(stop) - 1, len(self.text)), 0, -1)
                if self.text.endswith(stop[:n])
            ),
            default=0,
        )

    def _release(self, final: bool) -> str:
        end = self._stop_at()
        if end == len(self.text) and not final:
            end -= self._held_back()
        new = self.text[self.sent : end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return new
