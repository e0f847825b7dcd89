"""Builders that `conf/tokenizer/*.yaml` name: make a run's tokenizer (load one, or learn it from text).

Every builder takes `texts`, a function returning the corpus documents (called only when the tokenizer
must be learned from them), and `path`, a `tokenizer.json` or model folder to reuse instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from minigpt.tokenizer.base import DEFAULT_SPECIAL_TOKENS, Tokenizer, load_tokenizer
from minigpt.tokenizer.bpe import BPETokenizer, resolve_pattern
from minigpt.tokenizer.byte import ByteTokenizer
from minigpt.tokenizer.char import CharTokenizer

Texts = Callable[[], list[str]]


def char_tokenizer(texts: Texts, path: str | None = None) -> Tokenizer:
    """Load `path`, or collect the characters of the corpus."""
    return load_tokenizer(path) if path else CharTokenizer.train("".join(texts()))


def byte_tokenizer(texts: Texts, path: str | None = None) -> Tokenizer:
    """Load `path`, or the plain byte tokenizer (the corpus is not read)."""
    return load_tokenizer(path) if path else ByteTokenizer()


def bpe_tokenizer(
    texts: Texts,
    path: str | None = None,
    vocab_size: int = 4096,
    pattern: str = "gpt2",
    special_tokens: Sequence[str] | None = None,
    min_frequency: int = 2,
    cache_dir: str | None = None,
) -> Tokenizer:
    """Load `path`, or learn a byte-level BPE on the corpus (cached: the same texts and settings reuse it).

    The cache key hashes every document and every setting, so editing the corpus or changing
    `vocab_size` trains afresh while a repeated run loads `<cache_dir>/tokenizers/bpe-<key>/` in
    milliseconds. Without `cache_dir` the tokenizer is trained on every call.
    """
    if path:
        return load_tokenizer(path)
    special = list(DEFAULT_SPECIAL_TOKENS if special_tokens is None else special_tokens)
    documents = texts()
    settings = {
        "vocab_size": vocab_size,
        "pattern": resolve_pattern(pattern),
        "special": special,
        "min_frequency": min_frequency,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for doc in documents:
        digest.update(doc.encode("utf-8", errors="surrogatepass"))
        digest.update(b"\0")  # document boundaries matter: "ab","c" and "a","bc" train differently
    key = f"bpe-{digest.hexdigest()[:16]}"
    folder = Path(cache_dir).expanduser() / "tokenizers" / key if cache_dir else None
    if folder is not None and (folder / "tokenizer.json").exists():
        return load_tokenizer(folder)
    tokenizer = BPETokenizer.train(documents, vocab_size, pattern, special, min_frequency)
    if folder is not None:
        tokenizer.save(folder)
    return tokenizer
