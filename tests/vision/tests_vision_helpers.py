"""A tiny vision-language model shared by the vision tests."""

import numpy as np
import torch

from minigpt.data.vision.example import ImageLabels, VisionExample, user_turn
from minigpt.data.vision.shapes import COLOURS, Thing, draw
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.model.vision import VisionConfig, VisionLanguageModel, VisionTower
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_image_token


def tiny_vlm(kind: str = "vit", fusion: str = "prefix") -> tuple[VisionLanguageModel, CharTokenizer]:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train("0123456789 abcdefghijklmnopqrstuvwxyz?")
    image_id = add_image_token(tokenizer)
    lm = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=48, vocab_size=tokenizer.vocab_size))
    config = VisionConfig(kind=kind, image_size=8, num_tokens=4, patch_size=4, n_embd=16, n_head=2, fusion=fusion)
    tower = VisionTower(config, 32)
    return VisionLanguageModel(lm, tower, image_id), tokenizer


class OneSquare:
    """One square of one of 4 colours somewhere on a 12×12 canvas: "what colour?" (chance: 25 %)."""

    def examples(self, split: str, n: int | None, image_size: int) -> list[VisionExample]:
        rng = np.random.default_rng(("train", "val", "test").index(split))
        out = []
        for _ in range(n or 64):
            colour = str(rng.choice(list(COLOURS)))
            thing = Thing(int(rng.integers(0, 3)), colour, "square", int(rng.integers(0, 9)))
            out.append(VisionExample([draw([thing], image_size)], user_turn("colour?", colour), "colour"))
        return out

    def labelled(self, split: str, n: int | None, image_size: int) -> ImageLabels:
        examples = self.examples(split, n, image_size)
        labels = [[list(COLOURS).index(ex.answer)] for ex in examples]
        return ImageLabels(np.stack([ex.images[0] for ex in examples]), np.array(labels), (len(COLOURS),))
