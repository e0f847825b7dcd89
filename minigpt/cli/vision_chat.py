"""Chat about an image: `python -m minigpt.cli.chat run=<multimodal run> image=path/to/picture.png`, and
continue a prompt that shows images: `python -m minigpt.cli.generate run=<multimodal run> image=a.png
prompt="<image> a handwritten"` (`image=[a.png,b.png]` for several, one `<image>` marker each).

In a chat the image is the first user turn's `<image>`; every answer is decoded greedily with the image in the
context (`minigpt.evaluation.vision.greedy_answer`) and printed whole. The session has the interface the
text REPL (`minigpt.cli.chat.repl`) drives: `/reset`, `/system`, `/quit` work as in a text chat.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minigpt.data.vision.example import IMAGE_MARKER, VisionExample
from minigpt.data.vision.jsonl import read_image
from minigpt.evaluation.vision import greedy_answer
from minigpt.model.vision import VisionLanguageModel
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN, IMAGE_TOKEN, placeholder_encoder
from minigpt.utils.errors import ConfigError
from minigpt.utils.modes import eval_mode


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


def continue_with_images(
    model: VisionLanguageModel, tokenizer: Tokenizer, prompt: str, paths: list[str], max_new_tokens: int
) -> str:
    """The greedy continuation of `prompt` (special tokens allowed), whose `<image>` markers show the images
    at `paths` in order; a prompt without markers gets them all in front. Stops at `<|end|>` (or the end of
    text). The decoder reruns the sequence each step, as `VisionLanguageModel.greedy` explains."""
    markers = prompt.count(IMAGE_MARKER)
    if markers == 0:
        prompt, markers = IMAGE_MARKER * len(paths) + prompt, len(paths)
    if markers != len(paths):
        raise ConfigError(f"prompt has {markers} {IMAGE_MARKER} markers but image= gives {len(paths)} images.")
    images = np.stack([load_image(p, model.tower.config.image_size) for p in paths])
    encode = placeholder_encoder(
        tokenizer, IMAGE_MARKER, tokenizer.special_id(IMAGE_TOKEN), model.tower.config.placeholders, allow_special=True
    )
    ids = encode(prompt)
    stop = tokenizer.special_id(END_OF_TURN) if END_OF_TURN in tokenizer.special_tokens else tokenizer.eos_id
    with eval_mode(model):
        out = model.greedy(ids, torch.from_numpy(images), -1 if stop is None else stop, max_new_tokens)
    return tokenizer.decode(out, skip_special=True)
