"""Byte-level tokenizer: the 256 byte values of UTF-8, nothing learned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minigpt.tokenizer.base import DEFAULT_SPECIAL_TOKENS, Tokenizer


class ByteTokenizer(Tokenizer):
    """Id = byte value. Any text (any language, any emoji) encodes with no unknowns; sequences are long."""

    kind = "byte"

    def __init__(self, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS) -> None:
        super().__init__(special_tokens)

    @property
    def n_base(self) -> int:
        """256 byte values."""
        return 256

    def encode_ordinary(self, text: str) -> list[int]:
        """UTF-8 bytes of `text`."""
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The bytes themselves."""
        return bytes(ids)

    def state(self) -> dict[str, Any]:
        """Nothing to store."""
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any], special_tokens: Sequence[str]) -> ByteTokenizer:
        """Rebuild (the state is empty)."""
        return cls(special_tokens)
