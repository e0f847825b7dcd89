"""`TextDataModule`: random next-token windows from a tokenised corpus (pretraining data)."""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from minigpt.code.fim import FIMOptions
from minigpt.data.corpora import Corpus
from minigpt.data.token_cache import TokenSplits, token_splits
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError


class RandomWindows(Dataset):
    """Sample number i → the window starting at a random offset drawn from a generator seeded by (seed, i).

    Because a sample depends only on its number, the data order is a pure function of the seed: a run
    resumed at step s simply continues from sample s·batch_size and sees exactly the batches the
    uninterrupted run would have seen (no sampler or RNG state to save).
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, num_samples: int, seed: int) -> None:
        if len(tokens) <= seq_len:
            raise ConfigError(
                f"The training split has {len(tokens)} tokens, too few for data.seq_len={seq_len}; "
                "use more text or a shorter seq_len."
            )
        self.tokens, self.seq_len, self.num_samples, self.seed = tokens, seq_len, num_samples, seed

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        offset = int(np.random.default_rng([self.seed, i]).integers(len(self.tokens) - self.seq_len))
        window = torch.from_numpy(self.tokens[offset : offset + self.seq_len + 1].astype(np.int64))
        return window[:-1], window[1:]  # inputs, next-token targets


class StridedWindows(Dataset):
    """Up to `max_windows` evenly spaced, non-overlapping windows: a fixed validation set."""

    def __init__(self, tokens: np.ndarray, seq_len: int, max_windows: int) -> None:
        n_windows = (len(tokens) - 1) // seq_len
        if n_windows < 1:
            raise ConfigError(
                f"The validation split has {len(tokens)} tokens, too few for data.seq_len={seq_len}; "
                "raise data.val_fraction or shorten seq_len."
            )
        picks = np.linspace(0, n_windows - 1, num=min(n_windows, max_windows)).round().astype(np.int64)
        self.tokens, self.seq_len, self.offsets = tokens, seq_len, picks * seq_len

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        offset = int(self.offsets[i])
        window = torch.from_numpy(self.tokens[offset : offset + self.seq_len + 1].astype(np.int64))
        return window[:-1], window[1:]


class ResumableSampler(DistributedSampler):
    """Rank r of W yields sample numbers `start+r, start+r+W, …` below `end`; `start` is where a resumed
    run left off. Together the W ranks take the numbers a single process would take in the same steps, so
    a run on W processes with batch b computes the single-process run with batch W·b.

    A `DistributedSampler` so that Lightning uses it as it is: under DDP/FSDP it wraps any other sampler
    in one that shuffles the epoch, which breaks both promises (and a resumed run, whose epoch starts at
    `start`, would be shuffled differently from the uninterrupted one). Its length is the whole epoch's
    share, `end/W`, not what is left: a resumed Lightning loop restores how many batches of the epoch it
    has already seen and ends the epoch when that count reaches the loader's length, so a length of what
    is left would end it early and start a second pass over the data.
    """

    def __init__(self, start: int, end: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(end), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.start, self.end = start, end

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start + self.rank, self.end, self.num_replicas))

    def __len__(self) -> int:
        return self.end // self.num_replicas


class TextDataModule(L.LightningDataModule):
    """Pretraining data: a corpus, tokenised once into a cached memmap, served as random windows.

    The tokenizer is attached by the training script (`attach_tokenizer`) because it may itself be
    trained on this corpus first. The corpus is checked on construction (`Corpus.check`): empty, binary
    or too-short files are refused, or skipped with a warning when `skip_bad_files` is set.
    """

    def __init__(
        self,
        corpus: Corpus,
        seq_len: int,
        batch_size: int = 12,
        val_fraction: float = 0.1,
        max_val_windows: int = 256,
        num_workers: int = 0,
        num_proc: int = 1,
        seed: int = 1337,
        cache_dir: str | None = None,
        skip_bad_files: bool = False,
        fim_rate: float = 0.0,
        fim_spm_rate: float = 0.5,
        fim_middle_by: str = "span",
        fim_chunk_chars: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("seq_len", seq_len), ("batch_size", batch_size), ("max_val_windows", max_val_windows)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"data.{name}={value!r} must be a positive integer.")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.1).")
        corpus.check(min_chars=seq_len + 1, skip_bad_files=skip_bad_files)  # bad files fail here, not in fit
        self.corpus, self.seq_len, self.batch_size = corpus, seq_len, batch_size
        self.val_fraction, self.max_val_windows = val_fraction, max_val_windows
        self.num_workers, self.num_proc, self.seed, self.cache_dir = num_workers, num_proc, seed, cache_dir
        # Fill-in-the-middle examples in the training split (Bavarian et al. 2022; minigpt/code/fim.py).
        fim = FIMOptions(fim_rate, fim_spm_rate, fim_middle_by, seed, fim_chunk_chars)  # type: ignore[arg-type]
        self.fim = fim if fim_rate > 0 else None
        self.tokenizer: Tokenizer | None = None
        self.splits: TokenSplits | None = None

    def attach_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Set the tokenizer the corpus is encoded with."""
        self.tokenizer = tokenizer

    def prepare(self) -> TokenSplits:
        """Build (or find) the token cache; safe to call repeatedly."""
        if self.splits is None:
            if self.tokenizer is None:
                raise RuntimeError("TextDataModule needs attach_tokenizer(...) before use.")
            self.splits = token_splits(
                self.corpus, self.tokenizer, self.val_fraction, self.cache_dir, self.num_proc, self.fim
            )
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        """Open the memmaps."""
        self.prepare()

    @property
    def val_bytes_per_token(self) -> float:
        """UTF-8 bytes per validation token (turns a loss in nats/token into bits per byte)."""
        splits = self.prepare()
        return splits.val_bytes / splits.val_tokens

    def _samples_per_step(self) -> int:
        """Samples one optimizer step consumes across all data-parallel ranks.

        Under DDP/FSDP rank r takes every W-th sample number (`ResumableSampler`); the ranks together
        consume W·accumulate·batch_size numbers per step.
        """
        return self._replicas()[0] * self.trainer.accumulate_grad_batches * self.batch_size

    def _replicas(self) -> tuple[int, int]:
        """(W, this process's rank) of data parallelism; (1, 0) on one process."""
        kwargs = self.trainer.distributed_sampler_kwargs or {}
        return kwargs.get("num_replicas", 1), kwargs.get("rank", 0)

    def _total_samples(self) -> int:
        trainer = self.trainer
        if trainer is None or trainer.max_steps is None or trainer.max_steps < 0:
            return 10**9
        return trainer.max_steps * self._samples_per_step()

    def train_dataloader(self) -> DataLoader:
        """Random windows, continuing after the samples already consumed by a resumed run."""
        splits = self.prepare()
        trainer = self.trainer
        consumed, (replicas, rank) = 0, (1, 0)
        if trainer is not None:
            consumed = trainer.global_step * self._samples_per_step()
            replicas, rank = self._replicas()
        total = self._total_samples()
        dataset = RandomWindows(splits.load("train"), self.seq_len, total, self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=ResumableSampler(consumed, total, replicas, rank),
            num_workers=self.num_workers,
            drop_last=True,
        )

    def val_dataloader(self) -> DataLoader:
        """The fixed validation windows."""
        dataset = StridedWindows(self.prepare().load("val"), self.seq_len, self.max_val_windows)
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers)
