"""`ChatDataModule`: SFT data from tasks and/or JSONL conversations, rendered with the chat template.

Each conversation becomes (inputs, targets) with targets = next tokens where the chat template's mask is
True (assistant content and its `<|end|>`) and `IGNORE_INDEX` elsewhere, so the loss is on assistant
tokens only. Batches are right-padded, or packed (`pack=true`, see `minigpt.data.packing`).

The datamodule adds the chat special tokens to the tokenizer it is given (`attach_tokenizer`), before
anything is rendered: whoever renders chat owns its tokens. The SFT stage grows the model's embedding to
the tokenizer's new size.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from minigpt.data.chat_files import Conversation, read_chat_jsonl
from minigpt.data.packing import Example, collate_indexed, collate_packed, collate_padded, pack
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.tasks.base import Task
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import add_chat_tokens, render_chat
from minigpt.utils.errors import ConfigError


def encode_conversation(tokenizer: Tokenizer, messages: Conversation) -> Example:
    """Render and shift: inputs = ids[:-1], targets = ids[1:] where the mask trains, else IGNORE_INDEX."""
    ids, mask = render_chat(tokenizer, messages)
    targets = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
    return ids[:-1], targets


def unrepresentable(tokenizer: Tokenizer, text: str) -> list[str]:
    """Characters of `text` that do not survive encode → decode (a char tokenizer maps unseen ones to 0)."""
    if tokenizer.decode(tokenizer.encode(text)) == text:
        return []
    return sorted({c for c in text if tokenizer.decode(tokenizer.encode(c)) != c})


class ChatRenderedDataModule(L.LightningDataModule):
    """Base of data modules whose text is rendered with the chat template (SFT, preferences).

    Attaching a tokenizer adds the chat special tokens to it, so the tokenizer the run builds the model
    from already has them; the module is its own `corpus` (its `documents()` can teach a tokenizer).
    """

    tokenizer: Tokenizer | None

    def attach_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Use `tokenizer`, adding the chat special tokens to it if it lacks them."""
        add_chat_tokens(tokenizer)
        self.tokenizer = tokenizer

    @property
    def corpus(self) -> ChatRenderedDataModule:
        """Texts a tokenizer can be learned from: each subclass's `documents()`."""
        return self


class PreparedRowsDataModule(ChatRenderedDataModule):
    """Base of the media chat modules (images, audio, speech synthesis): `prepare()` builds each split's
    rows once, `collate_rows(rows, pad_id)` turns a list of them into a batch; the loaders are shared here.

    Subclasses set `batch_size`, `num_workers`, `seed` and `collate_rows` (a plain function, so that a
    loader worker pickles the function and not the whole module).
    """

    batch_size: int
    num_workers: int
    seed: int
    collate_rows: Callable[..., dict[str, Any]]

    def prepare(self) -> Mapping[str, list[Any]]:
        """{"train": rows, "val": rows}, built once."""
        raise NotImplementedError

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rows = self.prepare()[split]
        assert self.tokenizer is not None
        pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        return DataLoader(
            rows,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            collate_fn=partial(type(self).collate_rows, pad_id=pad_id),
            num_workers=self.num_workers,
            drop_last=shuffle and len(rows) >= self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        return self._loader("val", shuffle=False)


class ChatDataModule(ChatRenderedDataModule):
    """SFT conversations: `num_train` examples per task plus the lines of `path` (JSONL).

    Args:
        tasks: {name: Task}; their train split feeds training, their validation split the validation
            loss and the exact-match the SFT stage logs.
        path: a JSONL file of conversations (see `minigpt.data.chat_files`).
        val_path: a JSONL validation file; without it, `val_fraction` of `path`'s lines are held out.
        num_train, num_val: examples per task for training / validation loss.
        num_eval: validation prompts per task answered by greedy generation at each validation.
        seq_len: the longest example (in input tokens); null = the model's context (the SFT stage sets
            it from the model it trains, before any data is rendered).
        pack: pack short examples into full `seq_len` rows (block-diagonal attention).
        truncate: cut over-long conversations to `seq_len` instead of failing.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task] | None = None,
        path: str | None = None,
        val_path: str | None = None,
        num_train: int = 5000,
        num_val: int = 128,
        num_eval: int = 64,
        seq_len: int | None = None,
        batch_size: int = 32,
        pack: bool = False,
        truncate: bool = False,
        val_fraction: float = 0.05,
        num_workers: int = 0,
        seed: int = 1337,
    ) -> None:
        super().__init__()
        self.tasks: dict[str, Task] = dict(tasks or {})
        if not self.tasks and not path:
            raise ConfigError("data.tasks is empty and data.path is unset; give tasks or a JSONL chat file.")
        for name, value in (("seq_len", seq_len or 1), ("batch_size", batch_size), ("num_val", num_val)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"data.{name}={value!r} must be a positive integer.")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.05).")
        self.path, self.val_path = path, val_path
        self.num_train, self.num_val, self.num_eval = num_train, num_val, num_eval
        self.seq_len, self.batch_size, self.pack, self.truncate = seq_len, batch_size, pack, truncate
        self.val_fraction, self.num_workers, self.seed = val_fraction, num_workers, seed
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, list[Any]] | None = None

    def documents(self) -> list[str]:
        """The content of every training and validation message."""
        pairs = self.conversations("train") + self.conversations("val")
        return [message["content"] for _, conv in pairs for message in conv]

    def conversations(self, split: str) -> list[tuple[str, Conversation]]:
        """(origin, messages) pairs of `split` ("train" or "val"); origin names the source in errors."""
        out: list[tuple[str, Conversation]] = []
        n = self.num_train if split == "train" else self.num_val
        for name, task in self.tasks.items():
            out += [(f"task {name}", ex.messages()) for ex in task.examples(split, n)] if n > 0 else []
        if self.path:
            out += self._file_conversations(split)
        return out

    def _file_conversations(self, split: str) -> list[tuple[str, Conversation]]:
        lines = [(f"{self.path} line {n}", conv) for n, conv in read_chat_jsonl(self.path)]
        if self.val_path:
            if split == "train":
                return lines
            return [(f"{self.val_path} line {n}", conv) for n, conv in read_chat_jsonl(self.val_path)]
        if len(lines) < 2:
            raise ConfigError(f"data.path={self.path!r} has one conversation; give ≥2 or a data.val_path.")
        order = list(range(len(lines)))
        random.Random(self.seed).shuffle(order)
        n_val = max(1, round(self.val_fraction * len(lines)))
        held_out = set(order[:n_val])
        return [line for i, line in enumerate(lines) if (i in held_out) == (split == "val")]

    def encode(self, origin: str, messages: Conversation) -> Example:
        """Checked encoding: every character representable, and the example fits `seq_len`."""
        assert self.tokenizer is not None and self.seq_len is not None
        for message in messages:
            bad = unrepresentable(self.tokenizer, message["content"])
            if bad:
                raise ConfigError(
                    f"{origin}: characters {bad} are not in the tokenizer's vocabulary; remove them or use "
                    "a model whose tokenizer covers them (e.g. a byte or BPE tokenizer)."
                )
        inputs, targets = encode_conversation(self.tokenizer, messages)
        if len(inputs) > self.seq_len:
            if not self.truncate:
                raise ConfigError(
                    f"{origin} renders to {len(inputs) + 1} tokens, more than data.seq_len+1="
                    f"{self.seq_len + 1}; shorten it, make the task smaller, or set data.truncate=true."
                )
            inputs, targets = inputs[: self.seq_len], targets[: self.seq_len]
            if all(t == IGNORE_INDEX for t in targets):
                raise ConfigError(
                    f"{origin}: cut to data.seq_len={self.seq_len}, no assistant token is left; shorten it."
                )
        return inputs, targets

    def prepare(self) -> dict[str, list[Any]]:
        """Render both splits once; shuffle (seeded) and optionally pack the training examples.

        Called by the dataloaders rather than in `setup`: Lightning sets the datamodule up before the
        stage, and the stage may still have to fill in `seq_len` from its model.
        """
        if self.splits is not None:
            return self.splits
        if self.tokenizer is None:
            raise RuntimeError("ChatDataModule needs attach_tokenizer(...) before use.")
        if self.seq_len is None:
            raise ConfigError("data.seq_len is unset; set it (e.g. data.seq_len=64) or train with stage=sft.")
        splits: dict[str, list[Any]] = {}
        for split in ("train", "val"):
            examples = [self.encode(origin, conv) for origin, conv in self.conversations(split)]
            if not examples:
                raise ConfigError(f"The {split} split is empty; raise data.num_train/num_val or add data.")
            if split == "train":
                random.Random(self.seed).shuffle(examples)
            splits[split] = pack(examples, self.seq_len) if self.pack else examples
        self.splits = splits
        return splits

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        """Batches of `split` ("train" or "val"), shuffled with the data seed if asked.

        Each batch carries `index` (B,), its rows' positions in the split (an example, or a packed row),
        so that a stage can keep a value per row (`stage=distill stage.teacher_cache=true`).
        """
        splits = self.prepare()
        assert self.tokenizer is not None and self.seq_len is not None
        pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        collate = (
            partial(collate_packed, pad_id=pad_id, seq_len=self.seq_len)
            if self.pack
            else partial(collate_padded, pad_id=pad_id)
        )
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        indexed: Any = list(enumerate(splits[split]))  # (index, row) pairs; a list serves as a map-style dataset
        return DataLoader(
            indexed,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=partial(collate_indexed, collate=collate),
            num_workers=self.num_workers,
            drop_last=shuffle and len(splits[split]) >= self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (an epoch is one pass; training runs by steps)."""
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        return self.dataloader("val")
