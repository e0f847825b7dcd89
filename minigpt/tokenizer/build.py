"""Builders that `conf/tokenizer/*.yaml` name: make a run's tokenizer (load one, or learn it from text).

Every builder takes `texts`, a function returning the corpus documents (called only when the tokenizer
must be learned from them), and `path`, a `tokenizer.json` or model folder to reuse instead.
"""

from __future__ import annotations

from collections.abc import Callable

from minigpt.tokenizer.base import Tokenizer, load_tokenizer
from minigpt.tokenizer.byte import ByteTokenizer
from minigpt.tokenizer.char import CharTokenizer

Texts = Callable[[], list[str]]


def char_tokenizer(texts: Texts, path: str | None = None) -> Tokenizer:
    """Load `path`, or collect the characters of the corpus."""
    return load_tokenizer(path) if path else CharTokenizer.train("".join(texts()))


def byte_tokenizer(texts: Texts, path: str | None = None) -> Tokenizer:
    """Load `path`, or the plain byte tokenizer (the corpus is not read)."""
    return load_tokenizer(path) if path else ByteTokenizer()
