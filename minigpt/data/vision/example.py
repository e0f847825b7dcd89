"""`VisionExample`: one conversation about images, and the `VisionSource` protocol every image data set follows.

The messages carry one `<image>` marker per image, where the image is seen (the datamodule expands each
marker into the encoder's `num_tokens` `<|image|>` placeholders). Images are float32 arrays
(channels, H, W) in [0, 1]. `kind` names the question type, so evaluation reports accuracy per type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

IMAGE_MARKER = "<image>"
SPLITS = ("train", "val", "test")


@dataclass
class VisionExample:
    """Images, the conversation about them, and the question type (`digit`, `colour`, `caption`, …)."""

    images: list[np.ndarray]
    messages: list[dict[str, str]]
    kind: str

    @property
    def answer(self) -> str:
        """The gold answer: the last assistant message."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "assistant")

    @property
    def prompt(self) -> list[dict[str, str]]:
        """The messages before the last assistant message (what a model is asked)."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return self.messages[:last]

    @property
    def question(self) -> str:
        """The last user message's text without its image markers (for plots and the answer prior)."""
        text = next(m["content"] for m in reversed(self.prompt) if m["role"] == "user")
        return text.replace(IMAGE_MARKER, "").strip()


@dataclass
class ImageLabels:
    """Images with class labels, for the encoder's classification pre-training (`vision.pretrain`).

    `labels[i, h]` is image i's class under head h, in range(classes[h]): digits have one head (the
    digit), scenes one per slot (empty, or which colour and shape is there).
    """

    images: np.ndarray  # (n, channels, H, W) float32 in [0, 1]
    labels: np.ndarray  # (n, heads) int64
    classes: tuple[int, ...]


class VisionSource(Protocol):
    """A data set of `VisionExample`s with fixed train / val / test splits."""

    def examples(self, split: str, n: int | None, image_size: int) -> list[VisionExample]:
        """Up to `n` examples of `split` (all of them for None; generators make exactly `n`)."""
        ...


class LabelledSource(VisionSource, Protocol):
    """A `VisionSource` that also knows a class label for each image (digits, scenes), so `vision.pretrain`
    can pre-train the encoder as a classifier on it."""

    def labelled(self, split: str, n: int | None, image_size: int) -> ImageLabels:
        """The images of `split` (as in `examples`) with their class labels."""
        ...


def check_split(split: str) -> None:
    """Refuse an unknown split name."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {list(SPLITS)}.")


def upscale(image: np.ndarray, image_size: int) -> np.ndarray:
    """(ch, h, w) → (ch, image_size, image_size) by pixel repetition (nearest neighbour); image_size % h == 0."""
    factor = image_size // image.shape[1]
    if factor * image.shape[1] != image_size or image.shape[1] != image.shape[2]:
        raise ValueError(f"Cannot upscale a {image.shape[1]}×{image.shape[2]} image to {image_size}×{image_size}.")
    return np.kron(image, np.ones((1, factor, factor), dtype=image.dtype))


def user_turn(question: str, answer: str) -> list[dict[str, str]]:
    """One image, one question, one answer: [user: "<image> question", assistant: answer]."""
    return [
        {"role": "user", "content": f"{IMAGE_MARKER} {question}"},
        {"role": "assistant", "content": answer},
    ]
