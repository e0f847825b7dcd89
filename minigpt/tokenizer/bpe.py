"""Byte-level BPE tokenizer: train on a corpus, encode like tiktoken, import/export tiktoken rank files.

A BPE vocabulary here is a list of distinct byte strings; a token's id is its index, which is also its
*rank*: the lower the rank, the earlier the merge that made it. Ids 0-255 of a trained tokenizer are the
single bytes; a rank file loaded from tiktoken may order them differently (GPT-2's does).

Encoding (the pure-Python reference, identical to tiktoken's rule):
  1. split the text into pre-tokens with a regex (`PATTERNS`), so that merges never cross a word, number
     or punctuation boundary;
  2. within a pre-token, start from its bytes and repeatedly merge the adjacent pair whose concatenation
     has the lowest rank (ties: leftmost), until no adjacent pair forms a token.
Results are cached per pre-token: in natural text a few thousand words make up most of the pre-tokens.
When `tiktoken` is installed, `encode_ordinary` uses a `tiktoken.Encoding` built from *our* ranks and
pattern (same ids, Rust speed); `encode_python` stays the reference the tests compare it against.
"""

from __future__ import annotations

import base64
import heapq
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import regex
from rich.progress import Progress

from minigpt.tokenizer.base import DEFAULT_SPECIAL_TOKENS, Tokenizer
from minigpt.tokenizer.bpe_learn import learn_tokens
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text

log = logging.getLogger(__name__)

# Pre-tokenisation rules. `\p{L}` is any letter, `\p{N}` any digit; `++` / `?+` are possessive (no
# backtracking: same matches, faster). "gpt2" is GPT-2's rule (Radford et al. 2019 §2.2): contractions,
# an optional space glued to the following word/number/punctuation run, and whitespace runs that leave
# their last space to the next word. "gpt4" is cl100k's: case-insensitive contractions, numbers in groups
# of at most three digits, and newlines kept apart from other whitespace. "code" is for source code: a
# newline run together with the next line's indentation is one pre-token (Python's blocks are spelled by
# it, so "\n        " becomes one token instead of eight spaces), identifiers keep their underscores and
# digits (`max_len_2`), numbers come in groups of at most three digits, operator runs stay together (`**=`).
PATTERNS: dict[str, str] = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "gpt4": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    "code": (
        r"""(?:\r?\n)++[ \t]*+| ?[\p{L}_][\p{L}\p{N}_]*+| ?\p{N}{1,3}+| ?[^\s\p{L}\p{N}_]++"""
        r"""|[ \t]++$|[ \t]+(?!\S)|\s"""
    ),
}


def resolve_pattern(pattern: str) -> str:
    """A preset name ("gpt2", "gpt4") → its regex; any other string must itself be a valid regex."""
    source = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(source)
    except regex.error as err:
        raise ConfigError(
            f"tokenizer.pattern={pattern!r} is neither a preset {sorted(PATTERNS)} nor a valid regex "
            f"({err}); use tokenizer.pattern=gpt2."
        ) from None
    return source


def _fix_surrogates(text: str) -> str:
    """Lone surrogates (not encodable as UTF-8) → U+FFFD, exactly as tiktoken does before encoding."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class BPETokenizer(Tokenizer):
    """Byte-level BPE with a regex pre-tokeniser; ids = ranks of a tiktoken-style vocabulary.

    Args:
        vocab: the token byte strings in id (rank) order; must be distinct and include all 256 bytes.
        pattern: a preset name from `PATTERNS` or a regex.
        special_tokens: strings that get the ids after the vocabulary.
        use_tiktoken: encode through `tiktoken` when it is installed (same ids, faster).
        cache_size: most pre-tokens whose encoding is remembered by the pure-Python path.
    """

    kind = "bpe"

    def __init__(
        self,
        vocab: Sequence[bytes],
        pattern: str = "gpt2",
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        use_tiktoken: bool = True,
        cache_size: int = 1 << 18,
    ) -> None:
        self.vocab = [bytes(t) for t in vocab]
        self.ranks = {t: i for i, t in enumerate(self.vocab)}
        if len(self.ranks) != len(self.vocab):
            raise ConfigError("The BPE vocabulary has repeated tokens; every token must be a distinct byte string.")
        missing = [b for b in range(256) if bytes([b]) not in self.ranks]
        if missing:
            raise ConfigError(
                f"The BPE vocabulary lacks {len(missing)} single bytes (e.g. {missing[0]}); a byte-level "
                "vocabulary must contain all 256 so that any text can be encoded."
            )
        self.pattern = resolve_pattern(pattern)
        self.use_tiktoken, self.cache_size = use_tiktoken, cache_size
        self._setup()
        super().__init__(special_tokens)

    def _setup(self) -> None:
        """Derived, unpicklable or rebuildable state: compiled regex, piece cache, tiktoken fast path."""
        self._regex = regex.compile(self.pattern)
        self._cache: dict[str, list[int]] = {}
        self._fast: Any = None
        if self.use_tiktoken:
            try:
                import tiktoken
            except ImportError:
                return
            self._fast = tiktoken.Encoding(
                f"minigpt-bpe-{len(self.vocab)}",
                pat_str=self.pattern,
                mergeable_ranks=self.ranks,
                special_tokens={},  # special tokens are handled by `Tokenizer.encode`
            )

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (for encoding worker processes) without the regex, cache and Rust encoder."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_regex", "_cache", "_fast")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild what `__getstate__` dropped."""
        self.__dict__.update(state)
        self._setup()

    # ---- training ----------------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        pattern: str = "gpt2",
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        min_frequency: int = 2,
        show_progress: bool = True,
    ) -> BPETokenizer:
        """Learn a vocabulary of `vocab_size` ids in all (256 bytes + merges + special tokens).

        Stops early (a smaller vocabulary) when no pair occurs `min_frequency` times any more.
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        n_new = vocab_size - 256 - len(special_tokens)
        if n_new < 0:
            raise ConfigError(
                f"tokenizer.vocab_size={vocab_size} is below 256 bytes + {len(special_tokens)} special "
                f"tokens; use at least {256 + len(special_tokens)}."
            )
        if min_frequency < 1:
            raise ConfigError(f"tokenizer.min_frequency={min_frequency} must be ≥ 1 (2 skips one-off pairs).")
        split = regex.compile(resolve_pattern(pattern)).findall
        texts = list(texts)
        with Progress(transient=True, disable=not show_progress) as progress:
            task = progress.add_task(f"BPE: pre-tokenising {len(texts)} texts", total=len(texts))
            pieces: Counter[str] = Counter()
            for text in texts:
                pieces.update(split(_fix_surrogates(text)))
                progress.advance(task)
            word_counts = {piece.encode("utf-8"): n for piece, n in pieces.items()}
            progress.update(task, description=f"BPE: learning {n_new} merges", completed=0, total=n_new)
            added = learn_tokens(word_counts, n_new, min_frequency, on_token=lambda: progress.advance(task))
        if len(added) < n_new:
            log.warning(
                "BPE stopped at %d of %d merges: no pair occurs %d times any more (a small corpus); "
                "the vocabulary has %d ids.",
                len(added),
                n_new,
                min_frequency,
                vocab_size - n_new + len(added),
            )
        return cls([bytes([b]) for b in range(256)] + added, pattern, special_tokens)

    # ---- encoding ----------------------------------------------------------------------------------
    @property
    def n_base(self) -> int:
        """Number of BPE tokens (the 256 bytes included)."""
        return len(self.vocab)

    def encode_ordinary(self, text: str) -> list[int]:
        """Text → ids, special strings treated as ordinary text; the tiktoken fast path when available."""
        if self._fast is not None:
            return self._fast.encode_ordinary(text)
        return self.encode_python(text)

    def encode_python(self, text: str) -> list[int]:
        """The pure-Python reference encoder: regex split, then rank-ordered merges per pre-token."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _fix_surrogates(text)
        cache, ids = self._cache, []
        for piece in self._regex.findall(text):
            piece_ids = cache.get(piece)
            if piece_ids is None:
                piece_ids = self._merge_piece(piece.encode("utf-8"))
                if len(cache) >= self.cache_size:
                    cache.clear()  # bounded memory; the frequent pieces come back at once
                cache[piece] = piece_ids
            ids.extend(piece_ids)
        return ids

    def _merge_piece(self, data: bytes) -> list[int]:
        """BPE on one pre-token: merge the lowest-rank adjacent pair (leftmost on ties) until none is left.

        The parts form a linked list over byte offsets (`end[i]` is where the part starting at i ends,
        -1 once merged into its left neighbour; `prev[i]` the start of the part before it). Candidate
        merges sit in a heap keyed (rank, start); a merge changes only its two neighbouring pairs, so an
        n-byte piece costs O(n log n) instead of the O(n²) of rescanning all pairs after each merge.
        """
        ranks = self.ranks
        whole = ranks.get(data)
        if whole is not None:
            return [whole]
        n = len(data)
        end = list(range(1, n + 1))
        prev = list(range(-1, n - 1))
        heap = [(r, i) for i in range(n - 1) if (r := ranks.get(data[i : i + 2])) is not None]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = end[i]
            # Stale unless part i is alive, has a right neighbour, and the pair still spells this rank
            # (ranks are distinct byte strings, so an equal rank means an unchanged pair).
            if j == -1 or j >= n or ranks.get(data[i : end[j]]) != rank:
                continue
            end[i], end[j] = end[j], -1
            if end[i] < n:
                prev[end[i]] = i
                right = ranks.get(data[i : end[end[i]]])
                if right is not None:
                    heapq.heappush(heap, (right, i))
            if prev[i] >= 0:
                left = ranks.get(data[prev[i] : end[i]])
                if left is not None:
                    heapq.heappush(heap, (left, prev[i]))
        ids, i = [], 0
        while i < n:
            ids.append(ranks[data[i : end[i]]])
            i = end[i]
        return ids

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Concatenate the tokens' bytes."""
        vocab = self.vocab
        return b"".join(vocab[i] for i in ids)

    # ---- tokenizer.json and tiktoken rank files ----------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The pattern (as a regex, so presets can never drift under a saved file) and the base64 vocab."""
        return {"pattern": self.pattern, "vocab": [base64.b64encode(t).decode("ascii") for t in self.vocab]}

    @classmethod
    def from_state(cls, state: dict[str, Any], special_tokens: Sequence[str]) -> BPETokenizer:
        """Rebuild from `state()`."""
        return cls([base64.b64decode(t) for t in state["vocab"]], state["pattern"], special_tokens)

    @classmethod
    def from_tiktoken(
        cls,
        source: str | Path | bytes,
        pattern: str = "gpt2",
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    ) -> BPETokenizer:
        """Load a tiktoken rank file (`<base64 token> <rank>` per line; a path or its bytes).

        With `pattern="gpt2"` and `special_tokens=["<|endoftext|>"]`, `gpt2.tiktoken` reproduces
        tiktoken's gpt2/r50k_base encoding id for id, `<|endoftext|>` = 50256 included.
        """
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        by_rank: dict[int, bytes] = {}
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                by_rank[int(rank)] = base64.b64decode(token, validate=True)
            except ValueError:
                raise ConfigError(
                    f"Line {number} of the rank file is {line[:60]!r}, not '<base64 token> <rank>'; "
                    "give a tiktoken .tiktoken file."
                ) from None
        if sorted(by_rank) != list(range(len(by_rank))):
            raise ConfigError(
                f"The rank file's {len(by_rank)} ranks are not 0..{len(by_rank) - 1}; ids must be dense to "
                "index an embedding table."
            )
        return cls([by_rank[r] for r in range(len(by_rank))], pattern, special_tokens)

    def save_tiktoken(self, path: str | Path) -> Path:
        """Write the vocabulary as a tiktoken rank file (atomically); returns the path."""
        path = Path(path)
        lines = (f"{base64.b64encode(t).decode('ascii')} {rank}\n" for rank, t in enumerate(self.vocab))
        atomic_write_text(path, "".join(lines))
        return path
