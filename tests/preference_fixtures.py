"""A tiny synthetic preference task for the reward, DPO and PPO stage tests: replies with more `a`s are better."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.model.heads import RewardModel, ScalarHead, save_reward_model
from minigpt.model.transformer import Transformer
from minigpt.tasks.base import Example, Task
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens

ALPHABET = "abcd"
OPTIM = {
    "lr": 3e-3, "weight_decay": 0.0,
    "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
}  # fmt: skip


class MoreA(Task):
    """Gold score = the fraction of `a` in the reply (0 for an empty reply).

    `name` is set per instance, not on the class, so that this test task stays out of the task registry.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.name = "more_a"

    def generate(self, rng: random.Random) -> Example:
        return Example("say: " + "".join(rng.choices(ALPHABET, k=4)), "aaa")

    def score(self, prompt: str, completion: str) -> float:
        return completion.count("a") / len(completion) if completion else 0.0


def write_pairs(path: Path, n: int = 240, seed: int = 0) -> Path:
    """`n` pairs: chosen mostly `a`, rejected from the other letters (the gold scorer agrees)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        prompt = MoreA().generate(rng).prompt
        chosen = "a" + "".join(rng.choices("aab", k=rng.randint(1, 3)))
        rejected = "".join(rng.choices("bcd", k=rng.randint(2, 4)))
        lines.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def base_model_folder(path: Path, **config: Any) -> Path:
    """A tiny random "SFT" model folder whose char tokenizer covers the task's text (no chat tokens yet).

    `config` overrides `ModelConfig` fields (e.g. `moe=MoEConfig(num_experts=4)`).
    """
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(ALPHABET + "say: ")
    fields = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=tokenizer.vocab_size)
    model = Transformer(ModelConfig(**{**fields, **config}))
    return save_model_folder(path, model, tokenizer)


def reward_model_folder(path: Path, base: Path) -> Path:
    """A reward model on the base trunk (chat tokens added), with a random head."""
    trunk, tokenizer = load_model_folder(base)
    add_chat_tokens(tokenizer)
    trunk.resize_vocab(tokenizer.vocab_size)
    head = ScalarHead(trunk.config.n_embd)
    torch.nn.init.normal_(head.proj.weight)
    return save_reward_model(path, RewardModel(trunk, head), tokenizer)
