"""Preference pairs: JSONL (prompt, chosen, rejected) records, validated, batched for reward models and DPO.

Line formats (blank lines skipped; every error names the file and line):

    {"prompt": "what is 2 plus 3?", "chosen": "5", "rejected": "6"}
    {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
     "rejected": [{"role": "assistant", "content": "go away"}]}

Optional fields: `margin` (≥ 0, how much better chosen is, e.g. a gold-score difference; the reward
loss can use it) and `task` (the task that produced the prompt: its validation prompts are then answered
and gold-scored during DPO). `python -m minigpt.cli.preference_pairs ...` writes such a file from a model's
samples (see `minigpt.data.preference_pairs`).

A batch holds the chosen rows then the rejected rows, `input_ids` (2B, T) right-padded, `completion_mask`
(2B, T) True on the completion's tokens (its closing `<|end|>` included; never prompt or padding),
`lengths` (2B,), `margin` (B,) and `index` (B,), the pair's position in its split (for precomputed
reference log-probs).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from minigpt.data.chat import ChatRenderedDataModule, unrepresentable
from minigpt.data.chat_files import Conversation, parse_conversation, read_jsonl
from minigpt.tasks.base import Task, get_task
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import render_chat
from minigpt.utils.errors import ConfigError


@dataclass(frozen=True)
class Preference:
    """One pair: the conversation so far, the preferred and the dispreferred assistant reply."""

    prompt: Conversation
    chosen: str
    rejected: str
    margin: float = 0.0
    task: str | None = None


def _reply(value: Any, field: str) -> str:
    """A reply given as a string or as a one-message assistant list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        if value[0].get("role") == "assistant" and isinstance(value[0].get("content"), str):
            return value[0]["content"]
    raise ValueError(f'"{field}" must be a string or [{{"role": "assistant", "content": ...}}]')


def parse_preference(record: Any) -> Preference:
    """One decoded JSON line → a `Preference`; `ValueError` with the reason if malformed."""
    if not isinstance(record, dict) or not {"prompt", "chosen", "rejected"} <= set(record):
        raise ValueError('expected an object with "prompt", "chosen" and "rejected"')
    prompt = record["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    chosen, rejected = _reply(record["chosen"], "chosen"), _reply(record["rejected"], "rejected")
    if chosen == rejected:
        raise ValueError('"chosen" and "rejected" are the same reply, which teaches nothing')
    # The chat validator checks roles and contents of the prompt turns (with a reply appended).
    prompt = parse_conversation({"messages": [*prompt, {"role": "assistant", "content": chosen}]})[:-1]
    margin = record.get("margin", 0.0)
    if not isinstance(margin, (int, float)) or margin < 0:
        raise ValueError(f'"margin" must be a number ≥ 0, got {margin!r}')
    task = record.get("task")
    if task is not None and not isinstance(task, str):
        raise ValueError(f'"task" must be a task name, got {task!r}')
    return Preference(prompt, chosen, rejected, float(margin), task)


def read_preferences(path: str) -> list[tuple[int, Preference]]:
    """(line number, pair) for every line of a preference JSONL file (`ConfigError` on a bad line)."""
    return read_jsonl(path, parse_preference, what="preference pairs")


# (chosen ids, chosen prompt length, rejected ids, rejected prompt length, margin, index)
PairExample = tuple[list[int], int, list[int], int, float, int]


def encode_preference(tokenizer: Tokenizer, pair: Preference) -> tuple[list[int], list[int], int]:
    """Chosen ids, rejected ids (each prompt + reply + `<|end|>`) and the prompt's length in tokens."""
    prompt_len = len(render_chat(tokenizer, pair.prompt, add_generation_prompt=True)[0])
    chosen = render_chat(tokenizer, [*pair.prompt, {"role": "assistant", "content": pair.chosen}])[0]
    rejected = render_chat(tokenizer, [*pair.prompt, {"role": "assistant", "content": pair.rejected}])[0]
    return chosen, rejected, prompt_len


def collate_pairs(batch: list[PairExample], pad_id: int) -> dict[str, Tensor]:
    """Chosen rows then rejected rows, right-padded to the longest; see the module docstring."""
    rows = [(c, cp) for c, cp, *_ in batch] + [(r, rp) for _, _, r, rp, *_ in batch]
    T = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, (row, prompt_len) in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, prompt_len : len(row)] = True
    return {
        "input_ids": ids,
        "completion_mask": mask,
        "lengths": torch.tensor([len(row) for row, _ in rows]),
        "margin": torch.tensor([ex[4] for ex in batch], dtype=torch.float),
        "index": torch.tensor([ex[5] for ex in batch]),
    }


class PreferenceDataModule(ChatRenderedDataModule):
    """Preference pairs from `path` (JSONL), for `stage=reward` and `stage=dpo`.

    Args:
        path: the pairs; `val_fraction` of them are held out unless `val_path` is given.
        source: `file` (the pairs of `path`) or `ai_feedback` (RL-CAI: the pairs are sampled from the model
            being trained and labelled by the constitution's judges when the run starts, written to
            `ai_feedback.out`; `minigpt.alignment.ai_feedback.write_feedback_pairs` takes `ai_feedback`).
        tasks: {name: Task} whose validation prompts DPO answers and gold-scores; empty = the tasks named
            by the records' `task` field, with default options.
        num_eval: validation prompts per task for that gold score.
        seq_len: the longest rendered pair in tokens; null = the model's context (set by the stage).
    """

    def __init__(
        self,
        path: str | None = None,
        val_path: str | None = None,
        tasks: Mapping[str, Task] | None = None,
        num_eval: int = 64,
        seq_len: int | None = None,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        num_workers: int = 0,
        seed: int = 1337,
        source: str = "file",
        ai_feedback: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if source == "ai_feedback":
            from minigpt.alignment.ai_feedback import write_feedback_pairs

            path = write_feedback_pairs(**(ai_feedback or {}))
        elif source != "file":
            raise ConfigError(f"data.source={source!r} is not known; use file (data.path=...) or ai_feedback.")
        if not path:
            raise ConfigError("data.path is unset; point it at a preference JSONL file (data.path=prefs.jsonl).")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.05).")
        for name, value in (("seq_len", seq_len or 1), ("batch_size", batch_size)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"data.{name}={value!r} must be a positive integer.")
        self.path, self.val_path, self.num_eval, self.seq_len = path, val_path, num_eval, seq_len
        self.batch_size, self.val_fraction, self.num_workers, self.seed = batch_size, val_fraction, num_workers, seed
        self.pairs = self._split_pairs()
        named = {p.task for _, p in self.pairs["train"] + self.pairs["val"] if p.task}
        self.tasks: dict[str, Task] = dict(tasks) if tasks else {n: get_task(n, seed=seed) for n in sorted(named)}
        self.tokenizer: Tokenizer | None = None
        self.examples: dict[str, list[PairExample]] | None = None

    def _split_pairs(self) -> dict[str, list[tuple[str, Preference]]]:
        assert self.path is not None
        lines = [(f"{self.path} line {n}", p) for n, p in read_preferences(self.path)]
        if self.val_path:
            val = [(f"{self.val_path} line {n}", p) for n, p in read_preferences(self.val_path)]
            return {"train": lines, "val": val}
        if len(lines) < 2:
            raise ConfigError(f"data.path={self.path!r} has one pair; give ≥2 or a data.val_path.")
        order = list(range(len(lines)))
        random.Random(self.seed).shuffle(order)
        held_out = set(order[: max(1, round(self.val_fraction * len(lines)))])
        return {
            "train": [line for i, line in enumerate(lines) if i not in held_out],
            "val": [line for i, line in enumerate(lines) if i in held_out],
        }

    def documents(self) -> list[str]:
        """Every prompt turn and reply of both splits."""
        pairs = [p for split in self.pairs.values() for _, p in split]
        return [m["content"] for p in pairs for m in p.prompt] + [t for p in pairs for t in (p.chosen, p.rejected)]

    def prompts(self, split: str) -> list[Conversation]:
        """The prompt conversations of `split`."""
        return [p.prompt for _, p in self.pairs[split]]

    def _encode(self, index: int, origin: str, pair: Preference) -> PairExample:
        assert self.tokenizer is not None and self.seq_len is not None
        for text in [m["content"] for m in pair.prompt] + [pair.chosen, pair.rejected]:
            bad = unrepresentable(self.tokenizer, text)
            if bad:
                raise ConfigError(
                    f"{origin}: characters {bad} are not in the tokenizer's vocabulary; remove them or use a "
                    "model whose tokenizer covers them."
                )
        chosen, rejected, prompt_len = encode_preference(self.tokenizer, pair)
        longest = max(len(chosen), len(rejected))
        if longest > self.seq_len:
            raise ConfigError(
                f"{origin} renders to {longest} tokens, more than data.seq_len={self.seq_len}; "
                "drop or shorten that pair (the model's context is the limit)."
            )
        return chosen, prompt_len, rejected, prompt_len, pair.margin, index

    def prepare(self) -> dict[str, list[PairExample]]:
        """Encode both splits once (after the stage has set `seq_len` from its model)."""
        if self.examples is None:
            if self.tokenizer is None:
                raise RuntimeError("PreferenceDataModule needs attach_tokenizer(...) before use.")
            if self.seq_len is None:
                raise ConfigError("data.seq_len is unset; set it or train with stage=reward / stage=dpo.")
            self.examples = {
                split: [self._encode(i, origin, p) for i, (origin, p) in enumerate(pairs)]
                for split, pairs in self.pairs.items()
            }
        return self.examples

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        """Batches of `split` ("train" or "val"), shuffled with the data seed if asked."""
        examples = self.prepare()[split]
        assert self.tokenizer is not None
        pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        return DataLoader(
            examples,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            collate_fn=partial(collate_pairs, pad_id=pad_id),
            num_workers=self.num_workers,
            drop_last=shuffle and len(examples) >= self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training pairs."""
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Held-out pairs in a fixed order."""
        return self.dataloader("val")
