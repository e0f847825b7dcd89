"""Prompts for the RL stages: task prompts and/or a user's JSONL, rendered with the chat template.

An RL stage needs no answers, only questions: each batch is a list of prompts that the policy answers
itself. Prompts come from tasks (their train split for training, validation split for validation, so
held-out prompts are never trained on) and/or from a JSONL file, one prompt per line:

    {"prompt": "write a happy line about the sea"}
    {"messages": [{"role": "user", "content": "write a happy line about the sea"}]}

A batch is {"prompt": [str], "task": [str | None], "prompt_ids": [[int]]}: the ids end with the
`<|assistant|>` marker, ready for generation.

For PPO-ptx (Ouyang et al. 2022, eq. 2), `demonstrations()` yields SFT batches of the tasks' training
examples (prompt + gold answer, loss on the answer only), mixed into the policy loss to keep the
supervised skill from eroding.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader

from minigpt.data.chat import ChatRenderedDataModule, encode_conversation, unrepresentable
from minigpt.data.chat_files import read_jsonl
from minigpt.data.packing import collate_padded
from minigpt.tasks.base import Task
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import render_chat
from minigpt.utils.errors import ConfigError

Prompt = tuple[str, str | None]  # (text, task name)


def parse_prompt(record: Any) -> str:
    """One JSON line → the prompt text; `ValueError` with the reason if malformed."""
    if isinstance(record, dict) and isinstance(record.get("prompt"), str):
        return record["prompt"]
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        messages = record["messages"]
        if len(messages) == 1 and messages[0].get("role") == "user" and isinstance(messages[0].get("content"), str):
            return messages[0]["content"]
        raise ValueError('"messages" must hold exactly one user message (RL prompts are single-turn)')
    raise ValueError('expected {"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}')


def collate_prompts(batch: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Lists of prompts, tasks and prompt ids (a batch of variable-length questions is not a tensor)."""
    return {key: [item[key] for item in batch] for key in ("prompt", "task", "prompt_ids")}


class PromptDataModule(ChatRenderedDataModule):
    """Prompts for `stage=ppo` (and later GRPO / ReST).

    Args:
        tasks: {name: Task}: `num_train` train-split and `num_val` validation-split prompts of each.
        path: a JSONL file of prompts; `val_fraction` of its lines are held out.
        batch_size: prompts per rollout (per device).
    """

    def __init__(
        self,
        tasks: Mapping[str, Task] | None = None,
        path: str | None = None,
        num_train: int = 5000,
        num_val: int = 64,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        seed: int = 1337,
    ) -> None:
        super().__init__()
        self.tasks: dict[str, Task] = dict(tasks or {})
        if not self.tasks and not path:
            raise ConfigError("data.tasks is empty and data.path is unset; give tasks or a JSONL file of prompts.")
        for name, value in (("batch_size", batch_size), ("num_val", num_val)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"data.{name}={value!r} must be a positive integer.")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.05).")
        self.path, self.num_train, self.num_val = path, num_train, num_val
        self.batch_size, self.val_fraction, self.seed = batch_size, val_fraction, seed
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, list[dict[str, Any]]] | None = None

    def prompts(self, split: str) -> list[Prompt]:
        """(text, task) of every prompt of `split` ("train" or "val")."""
        n = self.num_train if split == "train" else self.num_val
        out: list[Prompt] = [(ex.prompt, name) for name, task in self.tasks.items() for ex in task.examples(split, n)]
        if self.path:
            lines = read_jsonl(self.path, parse_prompt, what="prompts")
            order = list(range(len(lines)))
            random.Random(self.seed).shuffle(order)
            held_out = set(order[: max(1, round(self.val_fraction * len(lines)))])
            out += [(text, None) for i, (_, text) in enumerate(lines) if (i in held_out) == (split == "val")]
        return out

    def documents(self) -> list[str]:
        """Prompt texts (a tokenizer learned from them covers every prompt)."""
        return [text for split in ("train", "val") for text, _ in self.prompts(split)]

    def render(self, text: str, origin: str) -> list[int]:
        """A user turn and the assistant marker: the ids a reply is generated after."""
        assert self.tokenizer is not None
        bad = unrepresentable(self.tokenizer, text)
        if bad:
            raise ConfigError(
                f"{origin}: characters {bad} are not in the tokenizer's vocabulary; remove them or use a model "
                "whose tokenizer covers them (e.g. a byte or BPE tokenizer)."
            )
        return render_chat(self.tokenizer, [{"role": "user", "content": text}], add_generation_prompt=True)[0]

    def longest_prompt(self) -> tuple[int, str]:
        """The longest rendered prompt of both splits: (tokens, text), to check it leaves room for a reply."""
        return max((len(item["prompt_ids"]), item["prompt"]) for items in self.prepare().values() for item in items)

    def prepare(self) -> dict[str, list[dict[str, Any]]]:
        """Render both splits once."""
        if self.splits is not None:
            return self.splits
        if self.tokenizer is None:
            raise RuntimeError("PromptDataModule needs attach_tokenizer(...) before use.")
        splits: dict[str, list[dict[str, Any]]] = {}
        for split in ("train", "val"):
            items = [
                {
                    "prompt": text,
                    "task": task,
                    "prompt_ids": self.render(text, f"{split} prompt {text!r} ({task or self.path})"),
                }
                for text, task in self.prompts(split)
            ]
            if not items:
                raise ConfigError(f"The {split} split has no prompts; raise data.num_train/num_val or add lines.")
            splits[split] = items
        self.splits = splits
        return splits

    def train_dataloader(self) -> DataLoader:
        """Shuffled prompt batches (training runs by steps; epochs just repeat the prompts)."""
        generator = torch.Generator().manual_seed(self.seed)
        items = self.prepare()["train"]
        return DataLoader(items, batch_size=self.batch_size, shuffle=True, generator=generator,
                          collate_fn=collate_prompts, drop_last=len(items) >= self.batch_size)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        """Held-out prompts in a fixed order."""
        return DataLoader(self.prepare()["val"], batch_size=self.batch_size, collate_fn=collate_prompts)

    def demonstrations(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Endless SFT batches of the tasks' training examples, for the PPO-ptx loss."""
        if not self.tasks or self.tokenizer is None:
            raise ConfigError(
                "stage.ptx_coef > 0 needs task prompts (data=prompts/<task>): their answers are the demonstrations."
            )
        examples = [
            encode_conversation(self.tokenizer, ex.messages())
            for task in self.tasks.values()
            for ex in task.examples("train", self.num_train)
        ]
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        collate = partial(collate_padded, pad_id=pad)
        generator = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(examples, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=generator)
        return itertools.chain.from_iterable(itertools.repeat(loader))
