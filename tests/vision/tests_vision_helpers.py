"""A tiny vision-language model shared by the vision tests."""

import torch

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.model.vision import VisionConfig, VisionLanguageModel, VisionTower
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_image_token


def tiny_vlm(kind: str = "vit") -> tuple[VisionLanguageModel, CharTokenizer]:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train("0123456789 abcdefghijklmnopqrstuvwxyz?")
    image_id = add_image_token(tokenizer)
    lm = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=48, vocab_size=tokenizer.vocab_size))
    tower = VisionTower(VisionConfig(kind=kind, image_size=8, num_tokens=4, patch_size=4, n_embd=16, n_head=2), 32)
    return VisionLanguageModel(lm, tower, image_id), tokenizer
