"""Fill-in-the-middle: PSM and SPM reassemble the file; AST middles are whole nodes; the rates hold."""

from __future__ import annotations

import ast
import random

import pytest

from minigpt.code.ast_tools import parses_alone
from minigpt.code.fim import (
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    FIMOptions,
    apply_fim,
    apply_fim_chunked,
    chunk_lines,
    chunk_with_spans,
    parse_fim,
    reassemble,
    split_by_node,
)
from minigpt.utils.errors import ConfigError

CODE = '''def mean(xs):
    """Average of a list."""
    total = 0
    for x in xs:
        total += x
    return total / len(xs)


def label(n):
    if n > 0:
        return "positive"
    return "not positive"
'''


@pytest.mark.parametrize("middle_by", ["span", "ast"])
def test_psm_and_spm_reassemble_the_file(middle_by: str) -> None:
    rng = random.Random(0)
    for _ in range(200):
        example = apply_fim(CODE, rng, fim_rate=1.0, fim_spm_rate=0.5, middle_by=middle_by)
        assert example.startswith(FIM_PREFIX) and reassemble(example) == CODE


def test_psm_and_spm_layouts() -> None:
    rng = random.Random(1)
    psm = apply_fim("abcdef", rng, fim_rate=1.0, fim_spm_rate=0.0)
    prefix, middle, suffix = parse_fim(psm).prefix, parse_fim(psm).middle, parse_fim(psm).suffix
    assert psm == f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}{middle}"
    spm = apply_fim("abcdef", rng, fim_rate=1.0, fim_spm_rate=1.0)
    assert spm.startswith(FIM_PREFIX + FIM_SUFFIX) and reassemble(spm) == "abcdef"


def test_ast_middles_are_whole_nodes() -> None:
    rng = random.Random(2)
    kinds_seen = set()
    for _ in range(300):
        split = split_by_node(CODE, rng)
        kinds = [k for k in ("expression", "statement", "body") if parses_alone(split.middle, k)]  # type: ignore[arg-type]
        assert kinds, f"not a whole node: {split.middle!r}"
        kinds_seen.update(kinds)
    assert kinds_seen == {"expression", "statement", "body"}


def test_fim_rate_and_spm_rate_are_the_shares_of_documents() -> None:
    rng = random.Random(3)
    examples = [apply_fim(CODE, rng, fim_rate=0.5, fim_spm_rate=0.25) for _ in range(2000)]
    fim = [e for e in examples if e.startswith(FIM_PREFIX)]
    spm = [e for e in fim if e.startswith(FIM_PREFIX + FIM_SUFFIX)]
    assert abs(len(fim) / 2000 - 0.5) < 0.05 and abs(len(spm) / len(fim) - 0.25) < 0.05
    assert all(e == CODE for e in examples if not e.startswith(FIM_PREFIX))


def test_text_that_does_not_parse_falls_back_to_a_character_span() -> None:
    split = split_by_node("def broken(:\n  pass", random.Random(4))
    assert split.prefix + split.middle + split.suffix == "def broken(:\n  pass"


def test_chunk_lines_cuts_at_line_ends_within_the_size() -> None:
    pieces = chunk_lines(CODE, 60)
    assert "".join(pieces) == CODE and len(pieces) > 3
    assert all(len(p) <= 60 and p.endswith("\n") for p in pieces)
    assert chunk_lines("x" * 100 + "\nshort\n", 10) == ["x" * 100 + "\n", "short\n"]  # a long line stays whole


def test_context_level_fim_cuts_each_piece_on_its_own() -> None:
    rng = random.Random(5)
    pieces = chunk_lines(CODE, 60)
    for _ in range(50):
        example = apply_fim_chunked(CODE, rng, 60, fim_rate=1.0, fim_spm_rate=0.5, end="<E>")
        examples = [FIM_PREFIX + part for part in example.split(FIM_PREFIX)[1:]]
        assert len(examples) == len(pieces)  # one FIM example per piece, in order, each closed by `end`
        assert all(e.endswith("<E>") for e in examples)
        assert [reassemble(e.removesuffix("<E>")) for e in examples] == pieces
    assert apply_fim_chunked(CODE, rng, 60, fim_rate=0.0) is CODE  # untouched text is the same object
    assert apply_fim_chunked(CODE, random.Random(6), None, 1.0).count(FIM_PREFIX) == 1  # whole file: one cut


def test_context_level_ast_middles_are_whole_nodes_of_the_file_even_in_pieces_that_do_not_parse() -> None:
    pieces_spans = chunk_with_spans(CODE, 60)
    assert [piece for piece, _ in pieces_spans] == chunk_lines(CODE, 60)
    with pytest.raises(SyntaxError):  # "    return total / len(xs)\n\n\ndef label(n):\n    if n > 0:\n" alone
        ast.parse(pieces_spans[2][0])
    for piece, spans in pieces_spans:
        assert spans, f"no node inside {piece!r}"
        assert all(parses_alone(piece[s.start : s.end], s.kind) for s in spans)
    rng = random.Random(7)
    for _ in range(30):
        example = apply_fim_chunked(CODE, rng, 60, fim_rate=1.0, middle_by="ast")
        middles = [parse_fim(FIM_PREFIX + part).middle for part in example.split(FIM_PREFIX)[1:]]
        # every piece's middle is one whole node (SPM middles carry their prefix: check the PSM ones)
        psm = [m for m, part in zip(middles, example.split(FIM_PREFIX)[1:]) if not part.startswith(FIM_SUFFIX)]
        assert all(parses_alone(m, "expression") or parses_alone(m, "statement") for m in psm)
    assert chunk_with_spans("def broken(:\n  pass\n", 60) == [("def broken(:\n  pass\n", None)]


def test_fim_chunk_chars_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="data.fim_chunk_chars=0 must be a positive number"):
        FIMOptions(rate=0.5, chunk_chars=0)
