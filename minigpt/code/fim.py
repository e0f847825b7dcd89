"""Fill-in-the-middle (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the Middle").

A left-to-right model learns to infill if some training documents are cut into (prefix, middle, suffix)
and moved so that the middle comes last, after sentinel tokens that say which part is which:

    PSM:  <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|> middle
    SPM:  <|fim_prefix|><|fim_suffix|> suffix <|fim_middle|> prefix middle

(SPM as in the paper's section 3 / appendix D: the prefix moves after `<|fim_middle|>`, so the middle
continues it directly, which helps caching at inference; both sentinels still open the document so the
two formats share one vocabulary.) The document's end-of-text token follows, as for any document.

`fim_rate` is the share of documents transformed (the paper finds 0.5 to 0.9 costs no left-to-right
loss: the "FIM-for-free" property); `fim_spm_rate` the share of those written SPM rather than PSM (their
joint training uses 0.5). The paper picks the middle as a random character span; for code the middle can
instead be a whole AST node (a statement, an expression, a function's body: `minigpt.code.ast_tools`), so
the model learns to write units a programmer would ask for.

Document-level FIM (the paper's default) cuts a whole file; when the file is far longer than the model's
context, a training window then holds the middle's tokens after a stretch of suffix but almost never the
prefix and suffix around them, so a short-context model learns little infilling. Context-level FIM (the
paper's section 3 and appendix: FIM applied after chunking into context-sized pieces, which they found
slightly better) cuts each piece of about `chunk_chars` characters, at line ends, on its own:
`fim_chunk_chars`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from minigpt.code.ast_tools import NODE_KINDS, NodeKind, Span, node_spans
from minigpt.utils.errors import ConfigError

FIM_PREFIX = "<|fim_prefix|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_TOKENS = (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)
MiddleBy = Literal["span", "ast"]
# Part of every FIM token cache's key: raised whenever the same options start to make other examples, so
# that no run reads a cache written by the older transformation. 2: AST middles from the whole file's nodes.
FIM_FORMAT = 2


@dataclass(frozen=True)
class FIMSplit:
    """A document cut in three: `prefix + middle + suffix` is the document."""

    prefix: str
    middle: str
    suffix: str

    def psm(self) -> str:
        """Prefix-suffix-middle order."""
        return f"{FIM_PREFIX}{self.prefix}{FIM_SUFFIX}{self.suffix}{FIM_MIDDLE}{self.middle}"

    def spm(self) -> str:
        """Suffix-prefix-middle order (the paper's SPM variant: prefix and middle contiguous)."""
        return f"{FIM_PREFIX}{FIM_SUFFIX}{self.suffix}{FIM_MIDDLE}{self.prefix}{self.middle}"


def split_by_span(text: str, rng: random.Random) -> FIMSplit:
    """Cut at two character positions drawn uniformly (the paper's character-level split)."""
    i, j = sorted(rng.randint(0, len(text)) for _ in range(2))
    return FIMSplit(text[:i], text[i:j], text[j:])


def split_by_node(
    text: str, rng: random.Random, kinds: tuple[NodeKind, ...] = NODE_KINDS, spans: list[Span] | None = None
) -> FIMSplit:
    """Cut around one whole AST node: a kind is drawn uniformly among those present, then a node of it.

    Drawing the kind first keeps expressions (by far the most numerous nodes) from crowding out
    statements and function bodies. `spans` are the nodes of `text` when known (a piece's share of its
    whole file's nodes: `chunk_with_spans`); otherwise `text` is parsed here. Text that does not parse,
    or has no node, falls back to a character span.
    """
    if spans is None:
        try:
            spans = node_spans(text, kinds)
        except (SyntaxError, ValueError):
            return split_by_span(text, rng)
    present = sorted({s.kind for s in spans if s.kind in kinds})
    if not present:
        return split_by_span(text, rng)
    kind = rng.choice(present)
    span = rng.choice([s for s in spans if s.kind == kind])
    return FIMSplit(text[: span.start], text[span.start : span.end], text[span.end :])


def apply_fim(
    text: str,
    rng: random.Random,
    fim_rate: float = 0.5,
    fim_spm_rate: float = 0.5,
    middle_by: MiddleBy = "span",
    spans: list[Span] | None = None,
) -> str:
    """`text` as a FIM example with probability `fim_rate` (SPM with probability `fim_spm_rate`), else unchanged.

    `spans`: `text`'s AST nodes when already known (`middle_by="ast"`).
    """
    if rng.random() >= fim_rate:
        return text
    split = split_by_node(text, rng, spans=spans) if middle_by == "ast" else split_by_span(text, rng)
    return split.spm() if rng.random() < fim_spm_rate else split.psm()


def chunk_lines(text: str, max_chars: int) -> list[str]:
    """`text` cut at line ends into pieces of at most `max_chars` characters (a longer line is a piece of its
    own); the pieces join back into `text`."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        if current and len(current) + len(line) > max_chars:
            pieces.append(current)
            current = ""
        current += line
    return [*pieces, current] if current else pieces


def chunk_with_spans(
    text: str, max_chars: int, kinds: tuple[NodeKind, ...] = NODE_KINDS
) -> list[tuple[str, list[Span] | None]]:
    """`chunk_lines(text, max_chars)`, each piece with the AST nodes of `kinds` that lie wholly inside it
    (offsets into the piece), or None for every piece when `text` does not parse.

    The nodes come from parsing the whole file: a piece cut at line ends rarely parses on its own (it
    starts indented, or inside a block), so parsing pieces would leave AST masking to a few of them.
    """
    pieces = chunk_lines(text, max_chars)
    try:
        spans = node_spans(text, kinds)
    except (SyntaxError, ValueError):
        return [(piece, None) for piece in pieces]
    found: list[tuple[str, list[Span] | None]] = []
    start = 0
    for piece in pieces:
        end = start + len(piece)
        inside = [Span(s.start - start, s.end - start, s.kind) for s in spans if start <= s.start and s.end <= end]
        found.append((piece, inside))
        start = end
    return found


def apply_fim_chunked(
    text: str,
    rng: random.Random,
    chunk_chars: int | None,
    fim_rate: float = 0.5,
    fim_spm_rate: float = 0.5,
    middle_by: MiddleBy = "span",
    end: str = "",
) -> str:
    """`apply_fim` on the whole document (`chunk_chars=None`), or on each of its `chunk_lines` pieces.

    A piece made a FIM example is followed by `end` (the end-of-text token's string), as a whole FIM
    document is: the model learns where a middle stops (the paper's <EOT> after the middle). With
    `middle_by="ast"` a piece's middle is one of the whole file's nodes inside it (`chunk_with_spans`).
    """
    if chunk_chars is None:
        return apply_fim(text, rng, fim_rate, fim_spm_rate, middle_by)
    if middle_by == "ast":
        pieces_spans = chunk_with_spans(text, chunk_chars)
    else:
        pieces_spans = [(piece, None) for piece in chunk_lines(text, chunk_chars)]
    pieces = [piece for piece, _ in pieces_spans]
    transformed = [apply_fim(p, rng, fim_rate, fim_spm_rate, middle_by, spans) for p, spans in pieces_spans]
    if all(a is b for a, b in zip(transformed, pieces)):
        return text
    return "".join(t if t is p else t + end for t, p in zip(transformed, pieces))


def parse_fim(example: str) -> FIMSplit:
    """The (prefix, middle, suffix) of a PSM or SPM example; inverse of `FIMSplit.psm` / `.spm`.

    An SPM example does not mark where the prefix ends and the middle begins; the prefix is returned
    whole as the middle's start (prefix "" and middle = prefix + middle), which reassembles the same file.
    """
    if not example.startswith(FIM_PREFIX):
        raise ValueError(f"not a FIM example: it does not start with {FIM_PREFIX}")
    body = example[len(FIM_PREFIX) :]
    if body.startswith(FIM_SUFFIX):  # SPM
        suffix, middle = body[len(FIM_SUFFIX) :].split(FIM_MIDDLE, 1)
        return FIMSplit("", middle, suffix)
    prefix, rest = body.split(FIM_SUFFIX, 1)
    suffix, middle = rest.split(FIM_MIDDLE, 1)
    return FIMSplit(prefix, middle, suffix)


def reassemble(example: str) -> str:
    """The original document of a FIM example (or the text itself when it is not one)."""
    if not example.startswith(FIM_PREFIX):
        return example
    split = parse_fim(example)
    return split.prefix + split.middle + split.suffix


@dataclass(frozen=True)
class FIMOptions:
    """How a training corpus gets FIM examples (`data.fim_rate`, `data.fim_spm_rate`, `data.fim_middle_by`)."""

    rate: float = 0.0
    spm_rate: float = 0.5
    middle_by: MiddleBy = "span"
    seed: int = 0
    chunk_chars: int | None = None  # context-level FIM: pieces of about this many characters; None: whole files

    def __post_init__(self) -> None:
        for name, value in (("fim_rate", self.rate), ("fim_spm_rate", self.spm_rate)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"data.{name}={value} must be between 0 and 1 (the paper uses 0.5).")
        if self.middle_by not in ("span", "ast"):
            raise ConfigError(f"data.fim_middle_by={self.middle_by} must be span or ast.")
        if self.chunk_chars is not None and self.chunk_chars < 1:
            raise ConfigError(
                f"data.fim_chunk_chars={self.chunk_chars} must be a positive number of characters "
                "(about the context's length in characters) or null for whole files."
            )

    def key(self) -> str:
        """What identifies these options in a cache key."""
        chunk = "" if self.chunk_chars is None else f"-chunk{self.chunk_chars}"
        return f"fim{self.rate}-{self.spm_rate}-{self.middle_by}-{self.seed}{chunk}-v{FIM_FORMAT}"

    def check(self, special_tokens: list[str]) -> None:
        """Refuse a tokenizer without the sentinels: they must be single ids, not text the model can write."""
        missing = [t for t in FIM_TOKENS if t not in special_tokens]
        if missing:
            raise ConfigError(
                f"data.fim_rate={self.rate} needs a tokenizer with the FIM tokens {missing} as special tokens; "
                "use tokenizer=bpe_code (or add them to tokenizer.special_tokens)."
            )
