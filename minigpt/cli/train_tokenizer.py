"""Train a tokenizer ahead of a run.

    python -m minigpt.cli.train_tokenizer data=shakespeare_plays tokenizer.vocab_size=4096 out=tok/
    python train.py tokenizer=bpe tokenizer.path=tok/

Composes `conf/train_tokenizer.yaml` (a data config, a tokenizer config, paths), so the same `data=` and
`tokenizer.*=` overrides as `train.py` apply. Writes `<out>/tokenizer.json` (and, for BPE,
`<out>/tokenizer.tiktoken`, loadable by tiktoken) and prints the compression on the corpus. No run folder
is made: this is a preprocessing step.
"""

from __future__ import annotations

import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console

from minigpt.cli.command import command
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.bpe import BPETokenizer


def train_tokenizer(cfg: DictConfig, console: Console | None = None) -> tuple[Tokenizer, Path]:
    """Build the tokenizer that `cfg.tokenizer` describes on `cfg.data`'s corpus and save it to `cfg.out`."""
    console = console or Console()
    corpus = instantiate(cfg.data.corpus)
    documents = corpus.documents()
    start = time.perf_counter()
    tokenizer: Tokenizer = instantiate(cfg.tokenizer, texts=lambda: documents)
    seconds = time.perf_counter() - start
    out = Path(cfg.out)
    path = tokenizer.save(out)
    console.print(f"{tokenizer.kind} tokenizer: {tokenizer.vocab_size} ids, in {seconds:.1f} s → {path}")
    if isinstance(tokenizer, BPETokenizer):
        console.print(f"tiktoken rank file → {tokenizer.save_tiktoken(out / 'tokenizer.tiktoken')}")
    n_bytes = sum(len(d.encode("utf-8")) for d in documents)
    n_tokens = sum(len(tokenizer.encode_ordinary(d)) for d in documents)
    ratio = n_bytes / max(n_tokens, 1)
    console.print(f"{corpus.name}: {n_bytes:,} bytes → {n_tokens:,} tokens ({ratio:.2f} bytes/token)")
    return tokenizer, path


@command("train_tokenizer")
def main(cfg: DictConfig) -> Path:
    """Train and save the tokenizer; returns the path of the written `tokenizer.json`."""
    return train_tokenizer(cfg)[1]


if __name__ == "__main__":
    main()
