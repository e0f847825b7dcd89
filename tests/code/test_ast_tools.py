"""AST tools: functions with signature, docstring, body and calls; node spans that are whole nodes."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from minigpt.code.ast_tools import NODE_KINDS, functions, node_spans, parses_alone

SOURCE = '''import math


class Circle:
    def __init__(self, r: float) -> None:
        self.r = r

    def area(self, digits: int = 2) -> float:
        """The area, rounded."""
        return round(math.pi * self.r ** 2, digits)


async def fetch(url, *, retries=3):
    """Pretend to fetch `url` (é: a non-ASCII character before code on a line)."""
    é = [url] * retries; total = len(é)
    for attempt in range(retries):
        if attempt == total:
            print(f"done {attempt}")
    return é
'''


def test_functions_have_signature_docstring_body_and_calls() -> None:
    found = {f.qualname: f for f in functions(SOURCE)}
    assert list(found) == ["Circle.__init__", "Circle.area", "fetch"]
    area = found["Circle.area"]
    assert area.signature == "def area(self, digits: int=2) -> float:"
    assert area.docstring == "The area, rounded." and area.body == "        return round(math.pi * self.r ** 2, digits)"
    assert area.called == ("round",)
    fetch = found["fetch"]
    assert fetch.signature == "async def fetch(url, *, retries=3):" and fetch.docstring.startswith("Pretend")
    assert fetch.called == ("len", "print", "range") and fetch.source.startswith("async def fetch")
    assert SOURCE[fetch.span.start : fetch.span.end] == fetch.body and fetch.body.startswith("    é = [url]")


def test_invalid_python_raises_syntax_error() -> None:
    with pytest.raises(SyntaxError):
        functions("def broken(:\n")


def test_every_span_of_the_sample_is_a_whole_node() -> None:
    spans = node_spans(SOURCE)
    assert {s.kind for s in spans} == set(NODE_KINDS)
    texts = {SOURCE[s.start : s.end] for s in spans}
    assert "total = len(é)" in {t.strip() for t in texts} and "math.pi * self.r ** 2" in texts
    assert all(parses_alone(SOURCE[s.start : s.end], s.kind) for s in spans)


def test_spans_of_stdlib_files_are_whole_nodes() -> None:
    # Real code: decorators, f-strings, multi-line strings at column 0 inside indented blocks, `elif` chains.
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("textwrap.py", "cgitb.py", "_collections_abc.py"):
        source = (stdlib / name).read_text(encoding="utf-8")
        bad = [s for s in node_spans(source) if not parses_alone(source[s.start : s.end], s.kind)]
        assert bad == [], f"{name}: {source[bad[0].start : bad[0].end][:80]!r}" if bad else ""


def test_parses_alone_rejects_a_fragment() -> None:
    assert not parses_alone("    elif x:\n        pass", "statement") and not parses_alone("a +", "expression")
