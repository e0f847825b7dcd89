"""Train a tokenizer ahead of a run: `python -m minigpt.tokenizer.train data=<corpus> out=<folder>`.

Composes `conf/train_tokenizer.yaml` (a data config, a tokenizer config, paths) with Hydra's compose
API, so the same `data=` and `tokenizer.*=` overrides as `train.py` apply, e.g.

    python -m minigpt.tokenizer.train data=shakespeare_plays tokenizer.vocab_size=4096 out=tok/
    python train.py tokenizer=bpe tokenizer.path=tok/

Writes `<out>/tokenizer.json` (and, for BPE, `<out>/tokenizer.tiktoken`, loadable by tiktoken) and prints
the compression on the corpus. No run folder is made: this is a preprocessing step.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console

from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.bpe import BPETokenizer
from minigpt.utils.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(overrides: list[str]) -> DictConfig:
    """`conf/train_tokenizer.yaml` with command-line overrides applied."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train_tokenizer", overrides=overrides)


def train_tokenizer(cfg: DictConfig, console: Console | None = None) -> tuple[Tokenizer, Path]:
    """Build the tokenizer that `cfg.tokenizer` describes on `cfg.data`'s corpus and save it to `cfg.out`."""
    console = console or Console()
    if not cfg.get("out"):
        raise ConfigError("out is not set; name the folder to write, e.g. out=tok/.")
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


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (Hydra-style `key=value` overrides)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    try:
        train_tokenizer(compose_config(argv))
    except ConfigError as err:
        Console(stderr=True).print(f"[red]error:[/red] {err}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
