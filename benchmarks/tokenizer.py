"""BPE tokenizer speed: our training and encoding against HF `tokenizers` and `tiktoken`, in one run.

    OMP_NUM_THREADS=1 python benchmarks/tokenizer.py [--vocab-size 8192] [--repeat 1] [--rounds 3]

Text: Shakespeare's plays (`data=shakespeare_plays`, 5.06 MB), `--repeat` times. Prints
  * training time for `--vocab-size` ids: `BPETokenizer.train` against HF `ByteLevelBPETokenizer` (Rust,
    the same GPT-2 split rule and min_frequency), with the bytes/token each vocabulary reaches;
  * encoding MB/s, document by document, for two vocabularies: the one trained here and GPT-2's 50k
    ranks (the pinned `gpt2.tiktoken`). Ours: the pure-Python path (cold cache) and the fast path (a
    `tiktoken.Encoding` built from our ranks); references: tiktoken with the same ranks and pattern, and
    HF `tokenizers` with the vocabulary it trained itself (same size, same text).
Encoders take turns for `--rounds` rounds and the best round counts (the machine is shared). Ratios are
speed ours / reference. Our two paths and tiktoken must give identical ids (checked).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import tiktoken
from rich.console import Console
from rich.table import Table
from tokenizers.implementations import ByteLevelBPETokenizer

from minigpt.data.assets import GPT2_TIKTOKEN, GPT2_TIKTOKEN_MEMBER, fetch, read_members
from minigpt.data.corpora import ShakespearePlays
from minigpt.tokenizer.base import DEFAULT_SPECIAL_TOKENS
from minigpt.tokenizer.bpe import BPETokenizer


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of `fn` takes, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def encode_all(encode: Callable[[str], list[int]], docs: list[str]) -> tuple[float, list[list[int]]]:
    """Seconds to encode every document with `encode`, and the ids."""
    return timed(lambda: [encode(d) for d in docs])


def pure_encoder(tok: BPETokenizer) -> Callable[[str], list[int]]:
    """Our pure-Python path on a fresh copy of `tok` (an empty pre-token cache: a cold start)."""
    return BPETokenizer(tok.vocab, tok.pattern, list(tok.special_tokens), use_tiktoken=False).encode_ordinary


def tiktoken_encoder(tok: BPETokenizer) -> Callable[[str], list[int]]:
    """tiktoken itself, given our ranks and pattern."""
    return tiktoken.Encoding(
        "reference", pat_str=tok.pattern, mergeable_ranks=tok.ranks, special_tokens={}
    ).encode_ordinary


def best_of(
    rounds: int, encoders: dict[str, Callable[[], Callable[[str], list[int]]]], docs: list[str]
) -> dict[str, tuple[float, list[list[int]]]]:
    """Each encoder's fastest time over `rounds` interleaved rounds (a fresh encoder per round)."""
    best: dict[str, tuple[float, list[list[int]]]] = {}
    for _ in range(rounds):
        for name, make in encoders.items():
            seconds, ids = encode_all(make(), docs)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, ids)
    return best


def main() -> None:
    """Run the comparison and print two tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=1, help="use the corpus this many times")
    parser.add_argument("--rounds", type=int, default=3, help="encoding rounds; the best counts")
    args = parser.parse_args()
    console = Console(width=130)
    docs = ShakespearePlays().documents() * args.repeat
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    threads = "on" if os.environ.get("TOKENIZERS_PARALLELISM", "true") != "false" else "off"

    # ---- training ----
    ours_s, ours = timed(lambda: BPETokenizer.train(docs, args.vocab_size, show_progress=False))
    hf = ByteLevelBPETokenizer()
    n_hf = args.vocab_size - len(DEFAULT_SPECIAL_TOKENS)  # the same number of ordinary tokens
    hf_s, _ = timed(lambda: hf.train_from_iterator(docs, vocab_size=n_hf, min_frequency=2, show_progress=False))
    n_ours = sum(len(ours.encode_ordinary(d)) for d in docs)
    n_hf_tokens = sum(len(hf.encode(d).ids) for d in docs)
    table = Table(
        title=f"BPE training, {mb:.2f} MB, {ours.n_base} ordinary tokens (HF threads {threads}, {os.cpu_count()} CPUs)"
    )
    for column in ("trainer", "seconds", "bytes/token", "ours / HF time"):
        table.add_column(column, justify="right")
    table.add_row("MiniGPT BPETokenizer.train", f"{ours_s:.2f}", f"{mb * 1e6 / n_ours:.3f}", f"{ours_s / hf_s:.2f}×")
    table.add_row("HF ByteLevelBPETokenizer", f"{hf_s:.2f}", f"{mb * 1e6 / n_hf_tokens:.3f}", "")
    console.print(table)

    # ---- encoding ----
    gpt2_ranks = next(iter(read_members(fetch(GPT2_TIKTOKEN), GPT2_TIKTOKEN_MEMBER).values()))
    vocabularies = {
        f"trained {ours.n_base}": ours,
        "gpt2 50257": BPETokenizer.from_tiktoken(gpt2_ranks, "gpt2", ["<|endoftext|>"]),
    }
    table = Table(title=f"encoding MB/s, {mb:.2f} MB, one document at a time, one thread, best of {args.rounds}")
    for column in (
        "vocabulary",
        "ours pure",
        "ours fast",
        "tiktoken",
        "HF tokenizers",
        "pure / tiktoken",
        "fast / tiktoken",
        "fast / HF",
    ):
        table.add_column(column, justify="right")
    for name, tok in vocabularies.items():
        encoders = {
            "pure": partial(pure_encoder, tok),
            "fast": partial(getattr, tok, "encode_ordinary"),
            "tiktoken": partial(tiktoken_encoder, tok),
        }
        if tok is ours:
            encoders["hf"] = lambda: lambda d: hf.encode(d).ids
        best = best_of(args.rounds, encoders, docs)
        (pure_s, pure_ids), (fast_s, fast_ids), (tt_s, tt_ids) = best["pure"], best["fast"], best["tiktoken"]
        assert pure_ids == fast_ids == tt_ids, f"{name}: our ids differ from tiktoken's"
        hf_cell, hf_ratio = "—", "—"
        if "hf" in best:
            hf_cell, hf_ratio = f"{mb / best['hf'][0]:.2f}", f"{best['hf'][0] / fast_s:.2f}×"
        table.add_row(
            name,
            f"{mb / pure_s:.2f}",
            f"{mb / fast_s:.2f}",
            f"{mb / tt_s:.2f}",
            hf_cell,
            f"{tt_s / pure_s:.2f}×",
            f"{tt_s / fast_s:.2f}×",
            hf_ratio,
        )
    console.print(table)


if __name__ == "__main__":
    main()
