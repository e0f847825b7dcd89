"""Chat about an image: `python -m minigpt.cli.chat run=<multimodal run> image=path/to/picture.png`.

The image is the first user turn's `<image>`; every answer is decoded greedily with the image in the
context (`minigpt.evaluation.vision.greedy_answer`) and printed whole. The session has the interface the
text REPL (`minigpt.cli.chat.repl`) drives: `/reset`, `/system`, `/quit` work as in a text chat.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from minigpt.data.vision.example import IMAGE_MARKER, VisionExample
from minigpt.data.vision.jsonl import read_image
from minigpt.evaluation.vision import greedy_answer
from minigpt.model.vision import VisionLanguageModel
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError


def load_image(path: str, image_size: int) -> np.ndarray:
    """The image at `path` as the encoder takes it; a `ConfigError` naming `image=` if it cannot be used."""
    try:
        return read_image(Path(path).expanduser(), image_size)
    except ValueError as err:
        raise ConfigError(f"image={path}: {err}.") from None


class ImageChatSession:
    """The conversation about one image: `reply(text)` answers with the image in view.

    Args:
        max_new_tokens: the longest answer (the model's context bounds it too).
    """

    templated = True

    def __init__(
        self, model: VisionLanguageModel, tokenizer: Tokenizer, image: np.ndarray, max_new_tokens: int = 64
    ) -> None:
        self.model, self.tokenizer, self.image, self.max_new_tokens = model, tokenizer, image, max_new_tokens
        self.system: str | None = None
        self.messages: list[dict[str, str]] = []

    def reset(self) -> None:
        """Forget the conversation (the image stays)."""
        self.messages = []

    def set_system(self, text: str) -> None:
        """Set (or with "" remove) the system message, and reset."""
        self.system = text or None
        self.reset()

    def reply(self, text: str, on_text: Callable[[str], Any] | None = None, generator: Any = None) -> str:
        """Answer `text`; the first user turn carries the image. `generator` is unused (greedy)."""
        content = f"{IMAGE_MARKER} {text}" if not self.messages else text
        self.messages.append({"role": "user", "content": content})
        system = [{"role": "system", "content": self.system}] if self.system else []
        # An open assistant turn: the example's prompt is then everything said so far.
        example = VisionExample([self.image], [*system, *self.messages, {"role": "assistant", "content": ""}], "chat")
        answer = greedy_answer(self.model, self.tokenizer, example, self.max_new_tokens)
        self.messages.append({"role": "assistant", "content": answer})
        if on_text is not None:
            on_text(answer)
        return answer
