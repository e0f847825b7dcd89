"""Tokenizers behind one interface (`Tokenizer`), saved to and loaded from `tokenizer.json`."""

from minigpt.tokenizer.base import Tokenizer, load_tokenizer, tokenizer_from_json
from minigpt.tokenizer.bpe import BPETokenizer
from minigpt.tokenizer.byte import ByteTokenizer
from minigpt.tokenizer.char import CharTokenizer

__all__ = [
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "tokenizer_from_json",
]
