"""`VisionChatDataModule`: image conversations rendered with the chat template, images beside the tokens.

Each `<image>` marker of a message becomes `image_tokens` `<|image|>` placeholders (the encoder's tokens
per image), so the sequence has exactly one slot per projected patch; the model overwrites those slots
(`minigpt.model.vision.splice_images`). Targets are the SFT targets (assistant tokens only, `IGNORE_INDEX`
elsewhere): the placeholders are never predicted. A batch is right-padded token ids, targets, the images
of all its examples stacked in reading order (n_images, 3, H, W), and each example's question type.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from minigpt.data.chat import PreparedRowsDataModule, unrepresentable
from minigpt.data.packing import collate_padded
from minigpt.data.vision.example import IMAGE_MARKER, VisionExample, VisionSource
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import IMAGE_TOKEN, add_image_token, placeholder_encoder, render_chat
from minigpt.utils.errors import ConfigError

# (inputs, targets, images, kind) of one rendered example
VisionRow = tuple[list[int], list[int], list[np.ndarray], str]


def encode_vision_example(
    tokenizer: Tokenizer, example: VisionExample, image_tokens: int, add_generation_prompt: bool = False
) -> tuple[list[int], list[bool]]:
    """Render with the chat template, each `<image>` marker expanded to `image_tokens` placeholders.

    With `add_generation_prompt`, only `example.prompt` is rendered, ending in `<|assistant|>` (for answering).
    """
    encode = placeholder_encoder(tokenizer, IMAGE_MARKER, tokenizer.special_id(IMAGE_TOKEN), image_tokens)
    messages = example.prompt if add_generation_prompt else example.messages
    markers = sum(m["content"].count(IMAGE_MARKER) for m in messages)
    if markers != len(example.images):
        raise ConfigError(
            f"A {example.kind} example has {markers} {IMAGE_MARKER} markers but {len(example.images)} images."
        )
    return render_chat(tokenizer, messages, add_generation_prompt, encode_content=encode)


def collate_vision(batch: list[VisionRow], pad_id: int) -> dict[str, Any]:
    """Right-padded ids and targets (`collate_padded`), all images stacked in reading order, the kinds."""
    out: dict[str, Any] = collate_padded([(x, y) for x, y, _, _ in batch], pad_id)
    images = [image for _, _, row_images, _ in batch for image in row_images]
    out["images"] = torch.from_numpy(np.stack(images)) if images else None
    out["kinds"] = [kind for *_, kind in batch]
    return out


class VisionChatDataModule(PreparedRowsDataModule):
    """Image conversations from one or more `VisionSource`s (digits, scenes, a user's JSONL).

    Args:
        sources: {name: VisionSource}; a None source is switched off (`data.sources.digits=null`).
        num_train: training examples per source (null = all a fixed data set has).
        num_val: validation examples per source.
        image_size: the encoder's input size (images are made this size by each source).
        image_tokens: placeholders per image; null = the model's (set by the stage: the encoder's
            `num_tokens` with prefix fusion, 1 with cross-attention).
        seq_len: the longest example; null = the model's context (set by the stage).
        path: the JSONL file of `data=vision/jsonl` (read by its `ImageChatFile` source, named here so
            that the command line says `data.path=`).
    """

    collate_rows = staticmethod(collate_vision)

    def __init__(
        self,
        sources: Mapping[str, VisionSource],
        image_size: int,
        image_tokens: int | None = None,
        num_train: int | None = None,
        num_val: int = 200,
        seq_len: int | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 1337,
        path: str | None = None,
    ) -> None:
        super().__init__()
        sources = {name: source for name, source in sources.items() if source is not None}  # null = off
        if not sources:
            raise ConfigError(
                "data.sources is empty; use data=vision/digits, vision/shapes, vision/mix or vision/jsonl."
            )
        self.sources = dict(sources)
        self.image_size, self.image_tokens = image_size, image_tokens
        self.num_train, self.num_val, self.seq_len = num_train, num_val, seq_len
        self.batch_size, self.num_workers, self.seed, self.path = batch_size, num_workers, seed, path
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, list[VisionRow]] | None = None

    def attach_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Use `tokenizer`, adding the chat tokens and `<|image|>` if it lacks them."""
        add_image_token(tokenizer)
        self.tokenizer = tokenizer

    def examples(self, split: str) -> list[VisionExample]:
        """Every source's examples of `split` ("train", "val" or "test")."""
        n = self.num_train if split == "train" else self.num_val
        return [ex for source in self.sources.values() for ex in source.examples(split, n, self.image_size)]

    def documents(self) -> list[str]:
        """The text of every training and validation message (markers removed)."""
        return [
            m["content"].replace(IMAGE_MARKER, "")
            for s in ("train", "val")
            for ex in self.examples(s)
            for m in ex.messages
        ]

    def encode(self, example: VisionExample) -> VisionRow:
        """Checked rendering: representable characters, and the example fits `seq_len`."""
        assert self.tokenizer is not None and self.seq_len is not None and self.image_tokens is not None
        for message in example.messages:
            bad = unrepresentable(self.tokenizer, message["content"].replace(IMAGE_MARKER, ""))
            if bad:
                raise ConfigError(
                    f"A {example.kind} example has characters {bad} that the tokenizer cannot represent; "
                    "use a model whose tokenizer covers them (e.g. a byte or BPE tokenizer)."
                )
        ids, mask = encode_vision_example(self.tokenizer, example, self.image_tokens)
        if len(ids) - 1 > self.seq_len:
            raise ConfigError(
                f"A {example.kind} example renders to {len(ids)} tokens ({self.image_tokens} per image), more than "
                f"data.seq_len+1={self.seq_len + 1}; use fewer vision.num_tokens or a model with a longer context."
            )
        targets = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
        return ids[:-1], targets, example.images, example.kind

    def prepare(self) -> dict[str, list[VisionRow]]:
        """Render train and val once (train shuffled, seeded); called by the loaders, after `seq_len` is set."""
        if self.splits is not None:
            return self.splits
        if self.tokenizer is None:
            raise RuntimeError("VisionChatDataModule needs attach_tokenizer(...) before use.")
        if self.seq_len is None or self.image_tokens is None:
            raise ConfigError(
                "data.seq_len or data.image_tokens is unset; set them or train with stage=multimodal (which sets them)."
            )
        splits = {split: [self.encode(ex) for ex in self.examples(split)] for split in ("train", "val")}
        random.Random(self.seed).shuffle(splits["train"])
        self.splits = splits
        return splits
