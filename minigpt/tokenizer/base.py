"""The tokenizer interface every tokenizer (char, byte, BPE) implements, and `tokenizer.json` I/O.

A tokenizer maps text to a list of integer ids and back. Ids `0 .. n_base-1` are the tokenizer's own
vocabulary; special tokens (`<|bos|>`, `<|eos|>`, `<|pad|>`, chat role markers) follow. Special tokens are
*atomic* (never split) and are only produced from text when the caller allows them, so a user typing
"<|eos|>" into a prompt cannot end a generation early.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text

DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = ("<|bos|>", "<|eos|>", "<|pad|>")

_REGISTRY: dict[str, type[Tokenizer]] = {}


class Tokenizer(ABC):
    """Base class: subclasses encode/decode ordinary text; this class handles special tokens and I/O."""

    kind: ClassVar[str]

    def __init__(self, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS) -> None:
        self.special_tokens: dict[str, int] = {}
        self.add_special_tokens(special_tokens)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _REGISTRY[cls.kind] = cls

    # ---- what subclasses provide -------------------------------------------------------------------
    @property
    @abstractmethod
    def n_base(self) -> int:
        """Number of ordinary (non-special) ids."""

    @abstractmethod
    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text that contains no special tokens (special strings are ordinary text here)."""

    @abstractmethod
    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The UTF-8 bytes of ordinary ids (special ids are handled by `decode`)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything besides special tokens needed to rebuild this tokenizer (goes into tokenizer.json)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any], special_tokens: Sequence[str]) -> Tokenizer:
        """Rebuild from `state()`."""

    # ---- shared behaviour --------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Ordinary ids plus special tokens: the size the embedding table needs."""
        return self.n_base + len(self.special_tokens)

    def add_special_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Append special tokens that are not there yet; returns their ids (new and existing)."""
        ids = []
        for token in tokens:
            if token not in self.special_tokens:
                self.special_tokens[token] = len(self.special_tokens)
            ids.append(self.special_id(token))
        self._special_pattern = (
            re.compile("|".join(re.escape(t) for t in sorted(self.special_tokens, key=len, reverse=True)))
            if self.special_tokens
            else None
        )
        return ids

    def special_id(self, token: str) -> int:
        """The id of a special token; a clear error if this tokenizer lacks it."""
        if token not in self.special_tokens:
            raise KeyError(f"Tokenizer has no special token {token!r}; it has {sorted(self.special_tokens)}.")
        return self.n_base + self.special_tokens[token]

    @property
    def bos_id(self) -> int | None:
        """Id of `<|bos|>`, if present."""
        return self.special_id("<|bos|>") if "<|bos|>" in self.special_tokens else None

    @property
    def eos_id(self) -> int | None:
        """Id of `<|eos|>`, if present."""
        return self.special_id("<|eos|>") if "<|eos|>" in self.special_tokens else None

    @property
    def pad_id(self) -> int | None:
        """Id of `<|pad|>`, if present."""
        return self.special_id("<|pad|>") if "<|pad|>" in self.special_tokens else None

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Text → ids. With `allow_special`, special-token strings in `text` become their single ids."""
        if not allow_special or self._special_pattern is None:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for match in self._special_pattern.finditer(text):
            ids += self.encode_ordinary(text[start : match.start()])
            ids.append(self.special_id(match.group()))
            start = match.end()
        return ids + self.encode_ordinary(text[start:])

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        """Ids → text; bytes that are not valid UTF-8 become U+FFFD rather than an error."""
        by_id = {self.n_base + i: t for t, i in self.special_tokens.items()}
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            i = int(i)
            if i in by_id:
                parts.append(self.decode_bytes(run).decode("utf-8", errors="replace"))
                run = []
                if not skip_special:
                    parts.append(by_id[i])
            elif 0 <= i < self.n_base:
                run.append(i)
            else:
                raise ValueError(f"Token id {i} is outside this tokenizer's vocabulary of {self.vocab_size}.")
        parts.append(self.decode_bytes(run).decode("utf-8", errors="replace"))
        return "".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The `tokenizer.json` content."""
        ordered = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
        return {"kind": self.kind, "special_tokens": ordered, **self.state()}

    def fingerprint(self) -> str:
        """A short hash of the tokenizer's full definition (keys the token cache)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write `tokenizer.json` (into `path` if it is a folder) atomically; returns the file path."""
        path = Path(path)
        if path.suffix != ".json":
            path = path / "tokenizer.json"
        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False))
        return path


def tokenizer_from_json(data: dict[str, Any]) -> Tokenizer:
    """Rebuild any registered tokenizer from its `to_json()` dict."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _REGISTRY:
        raise ConfigError(f"tokenizer.json has kind={kind!r}; known kinds are {sorted(_REGISTRY)}.")
    special = data.pop("special_tokens", [])
    return _REGISTRY[kind].from_state(data, special)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a `tokenizer.json` file, or the one inside a model folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise ConfigError(f"No tokenizer at {path}; point tokenizer.path at a tokenizer.json or model folder.")
    import minigpt.tokenizer  # noqa: F401  (registers every tokenizer kind)

    return tokenizer_from_json(json.loads(path.read_text(encoding="utf-8")))
