"""`SpeechExample`: one clip and its transcript, with the conditions evaluation groups by; `SpeechSource`, the
protocol every speech data set follows; and the prompt a clip is asked with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

AUDIO_MARKER = "<audio>"
SPLITS = ("train", "val", "test")


@dataclass
class SpeechExample:
    """A 16 kHz float32 clip, what it says, and how it was made.

    `language` is the tag per sample (`en`, `zh`, …); `voice` and `snr_db` (None = clean) describe the
    speaker and the noise; `held_out_voice` / `held_out_noise` say whether training ever saw that voice /
    that noise level (a user's folder: unknown, False); `kind` is the kind of text (`digits`, `number`,
    `arithmetic prompt`, …).
    """

    audio: np.ndarray
    text: str
    language: str = "en"
    voice: str = "unknown"
    snr_db: float | None = None
    held_out_voice: bool = False
    held_out_noise: bool = False
    kind: str = "unknown"

    @property
    def messages(self) -> list[dict[str, str]]:
        """The conversation the LM path trains on: the clip (its placeholders) from the user, the transcript back."""
        return [{"role": "user", "content": AUDIO_MARKER}, {"role": "assistant", "content": self.text}]

    @property
    def prompt(self) -> list[dict[str, str]]:
        """The user turn alone (what the model answers)."""
        return self.messages[:1]


class SpeechSource(Protocol):
    """A data set of `SpeechExample`s with fixed train / val / test splits."""

    def examples(self, split: str, n: int | None) -> list[SpeechExample]:
        """Up to `n` examples of `split` (all of them for None; generators make exactly `n`)."""
        ...


def check_split(split: str) -> None:
    """Refuse an unknown split name."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {list(SPLITS)}.")
