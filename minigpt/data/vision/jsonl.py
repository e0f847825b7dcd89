"""A user's own images and conversations: one JSON object per line, validated like the text chat JSONL.

    {"images": ["cat.png"], "messages": [{"role": "user", "content": "<image> what is this?"},
                                         {"role": "assistant", "content": "a cat"}], "kind": "animals"}

Image paths are relative to the JSONL file (or absolute). PNG/JPEG files are read with Pillow and `.npy`
files with numpy. Every problem is one sentence naming the file and line: a missing or unreadable image,
`<image>` markers ≠ images. An image of another mode is converted (greyscale/RGBA/palette → RGB: the
encoder sees 3 channels); an image of another size is refused (resize it yourself: silent resampling
could blur away what the question is about). `kind` (optional) groups the accuracy in evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from minigpt.data.chat_files import parse_conversation, read_jsonl
from minigpt.data.vision.example import IMAGE_MARKER, SPLITS, VisionExample, check_split
from minigpt.utils.errors import ConfigError


def read_image(path: Path, image_size: int) -> np.ndarray:
    """(3, image_size, image_size) float32 in [0, 1]; `ValueError` with the reason if it cannot be used."""
    if not path.is_file():
        raise ValueError(f"image {str(path)!r} does not exist")
    if path.suffix.lower() != ".npy":
        return decode_image(path, repr(str(path)), image_size)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"image {str(path)!r} is not a readable .npy array ({err})") from None
    if array.ndim == 2:
        array = np.repeat(array[None], 3, axis=0)
    elif array.ndim == 3 and array.shape[-1] in (1, 3):  # (H, W, ch) → (ch, H, W)
        array = np.repeat(array.transpose(2, 0, 1), 3 // array.shape[-1], axis=0)
    array = array.astype(np.float32)
    if array.size and array.max() > 1.0:  # 0-255 integers
        array = array / 255.0
    return _checked_size(array, repr(str(path)), image_size)


def decode_image(file: Path | BinaryIO, name: str, image_size: int) -> np.ndarray:
    """A PNG/JPEG/… file or byte stream (Pillow) as (3, image_size, image_size) float32 in [0, 1], converted
    to RGB; `ValueError` naming `name` if it is not an image or has another size. The server's images
    (`minigpt.serve.images`) come this way from their data URLs."""
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib

    try:
        with Image.open(file) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"image {name} is not a readable image ({err})") from None
    return _checked_size(array, name, image_size)


def _checked_size(array: np.ndarray, name: str, image_size: int) -> np.ndarray:
    if array.shape != (3, image_size, image_size):
        raise ValueError(
            f"image {name} has shape {array.shape}, the encoder takes {image_size}×{image_size} "
            f"(greyscale or RGB); resize it to {image_size}×{image_size} first"
        )
    return array


class ImageChatFile:
    """A JSONL file of image conversations as a `VisionSource`; `val_fraction` of its lines (seeded) are
    held out for val, and as many again for test."""

    def __init__(self, path: str, val_fraction: float = 0.1, seed: int = 0) -> None:
        if not path:
            raise ConfigError("data=vision/jsonl needs data.path=<file.jsonl> (one image conversation per line).")
        self.path, self.val_fraction, self.seed = Path(path).expanduser(), val_fraction, seed

    def _parse(self, record: Any, image_size: int) -> VisionExample:
        if not isinstance(record, dict) or not isinstance(record.get("images"), list):
            raise ValueError('expected {"images": [paths], "messages": [...]}')
        messages = parse_conversation({"messages": record.get("messages")})
        markers = sum(m["content"].count(IMAGE_MARKER) for m in messages)
        if markers != len(record["images"]):
            raise ValueError(
                f"{markers} {IMAGE_MARKER} markers but {len(record['images'])} images; put one marker per image"
            )
        images = [read_image(self.path.parent / str(p), image_size) for p in record["images"]]
        return VisionExample(images, messages, str(record.get("kind", "jsonl")))

    def examples(self, split: str, n: int | None, image_size: int) -> list[VisionExample]:
        """The lines of `split`, cut to `n`."""
        check_split(split)
        lines = read_jsonl(self.path, lambda r: self._parse(r, image_size), "image conversations")
        order = np.random.default_rng(self.seed).permutation(len(lines))
        n_held = max(1, round(self.val_fraction * len(lines)))
        if len(lines) < 3:
            raise ConfigError(f"data.path={str(self.path)!r} has {len(lines)} lines; give ≥3 (train, val, test).")
        parts = {"val": order[:n_held], "test": order[n_held : 2 * n_held], "train": order[2 * n_held :]}
        chosen = [lines[i][1] for i in sorted(parts[split])]
        assert split in SPLITS
        return chosen[:n] if n is not None else chosen
