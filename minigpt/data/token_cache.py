"""Tokenise a corpus once into `uint16`/`uint32` memmaps, cached by (corpus, tokenizer) fingerprint.

Layout: `<cache>/tokens/<corpus>-<corpus fp>-<tokenizer fp>-<val fraction>/{train,val}.bin` plus
`meta.json` (token and byte counts of each split, so bits-per-byte can be reported). Writes are atomic,
so an interrupted build is rebuilt rather than half-read.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from minigpt.code.fim import FIMOptions, apply_fim_chunked
from minigpt.data.assets import cache_root
from minigpt.data.corpora import Corpus
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.io import atomic_write, atomic_write_text

_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_in_worker(text: str) -> list[int]:
    assert _worker_tokenizer is not None
    return _worker_tokenizer.encode_ordinary(text)


def encode_documents(tokenizer: Tokenizer, documents: list[str], num_proc: int = 1) -> list[list[int]]:
    """Encode every document (in `num_proc` processes when > 1), with a progress bar."""
    with Progress(transient=True) as progress:
        task = progress.add_task(f"tokenising {len(documents)} documents", total=len(documents))
        if num_proc <= 1:
            out = []
            for doc in documents:
                out.append(tokenizer.encode_ordinary(doc))
                progress.advance(task)
            return out
        with mp.get_context("spawn").Pool(num_proc, initializer=_init_worker, initargs=(tokenizer,)) as pool:
            out = []
            for ids in pool.imap(_encode_in_worker, documents, chunksize=4):
                out.append(ids)
                progress.advance(task)
            return out


@dataclass(frozen=True)
class TokenSplits:
    """Paths and sizes of the cached train/val token files."""

    folder: Path
    dtype: str
    train_tokens: int
    val_tokens: int
    train_bytes: int
    val_bytes: int

    def load(self, split: str) -> np.memmap:
        """Memory-map one split's tokens (read-only)."""
        return np.memmap(self.folder / f"{split}.bin", dtype=self.dtype, mode="r")


def token_splits(
    corpus: Corpus,
    tokenizer: Tokenizer,
    val_fraction: float,
    cache_dir: str | None = None,
    num_proc: int = 1,
    fim: FIMOptions | None = None,
) -> TokenSplits:
    """Return the cached token splits of `corpus`, building them on first use.

    Documents are joined with `<|eos|>` (when the tokenizer has one) so the model learns where a text
    ends; the last `val_fraction` of the token stream is the validation split. With `fim`, documents that
    lie wholly in the training split become fill-in-the-middle examples at `fim.rate`
    (`minigpt.code.fim`); the validation split stays exactly the plain one, so that left-to-right losses
    of runs with and without FIM compare on the same tokens.
    """
    key = f"{corpus.name}-{corpus.fingerprint}-{tokenizer.fingerprint()}-{val_fraction}"
    if fim is not None and fim.rate > 0:
        fim.check(list(tokenizer.special_tokens))
        key += f"-{fim.key()}"
    folder = cache_root(cache_dir) / "tokens" / key
    meta_path = folder / "meta.json"
    if meta_path.exists():
        return TokenSplits(folder=folder, **json.loads(meta_path.read_text()))

    documents = corpus.documents()
    encoded = encode_documents(tokenizer, documents, num_proc)
    eos = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
    lengths = np.array([len(ids) + len(eos) for ids in encoded])
    dtype = "uint16" if tokenizer.vocab_size <= 2**16 else "uint32"
    tokens = np.fromiter((t for ids in encoded for t in (*ids, *eos)), dtype=dtype, count=int(lengths.sum()))
    n_val = max(int(len(tokens) * val_fraction), 1)
    split_at = len(tokens) - n_val
    # Bytes per split, for bits-per-byte: attribute each document's bytes to its tokens proportionally.
    doc_bytes = np.array([len(d.encode("utf-8")) for d in documents], dtype=np.float64)
    bytes_per_token = np.repeat(doc_bytes / np.maximum(lengths, 1), lengths)
    meta = {
        "dtype": dtype,
        "train_tokens": int(split_at),
        "val_tokens": int(n_val),
        "train_bytes": int(round(bytes_per_token[:split_at].sum())),
        "val_bytes": int(round(bytes_per_token[split_at:].sum())),
    }
    train = tokens[:split_at]
    if fim is not None and fim.rate > 0:
        train = with_fim(train, documents, lengths, tokenizer, eos, fim)
        meta["train_tokens"] = len(train)
    atomic_write(folder / "train.bin", lambda tmp: train.tofile(tmp))
    atomic_write(folder / "val.bin", lambda tmp: tokens[split_at:].tofile(tmp))
    atomic_write_text(meta_path, json.dumps(meta))  # written last: its presence marks a complete cache
    return TokenSplits(folder=folder, **meta)


def with_fim(
    train: np.ndarray, documents: list[str], lengths: np.ndarray, tokenizer: Tokenizer, eos: list[int], fim: FIMOptions
) -> np.ndarray:
    """The training tokens with each document that ends inside them re-encoded as a FIM example at `fim.rate`
    (the document cut by the split boundary keeps its plain tokens)."""
    rng = random.Random(fim.seed)
    ends = np.cumsum(lengths)
    whole = int(np.searchsorted(ends, len(train), side="right"))  # documents 0 … whole-1 end inside train
    parts: list[np.ndarray] = []
    end = "" if tokenizer.eos_id is None else tokenizer.decode([tokenizer.eos_id])  # after each FIM piece
    for i in range(whole):
        text = apply_fim_chunked(documents[i], rng, fim.chunk_chars, fim.rate, fim.spm_rate, fim.middle_by, end)
        start = int(ends[i] - lengths[i])
        if text is documents[i]:
            parts.append(train[start : int(ends[i])])
        else:
            parts.append(np.array([*tokenizer.encode(text, allow_special=True), *eos], dtype=train.dtype))
    parts.append(train[int(ends[whole - 1]) if whole else 0 :])
    return np.concatenate(parts)
