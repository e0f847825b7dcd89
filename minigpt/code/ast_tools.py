"""Python source seen through its syntax tree: functions and the character spans of whole nodes.

`functions(source)` lists every function (methods and nested ones too) with its signature, docstring, body
and the names it calls: the raw material for docstring → code tasks and function-level masking.
`node_spans(source)` lists the spans of whole statements, expressions and function bodies, the units that
AST-guided fill-in-the-middle masks (`minigpt.code.fim`).

Positions: `ast` reports columns as UTF-8 *byte* offsets within a line; everything here converts them to
*character* offsets into the source string, so that `source[start:end]` is the node's text even when a line
holds non-ASCII characters before it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Literal

NodeKind = Literal["statement", "expression", "body"]
NODE_KINDS: tuple[NodeKind, ...] = ("statement", "expression", "body")
# Expression nodes that are only ever part of another expression (`a[1:2]`'s slice, `f(*args)`'s star).
PARTIAL_EXPRESSIONS = (ast.Slice, ast.Starred)


@dataclass(frozen=True)
class Span:
    """A node's characters `source[start:end]`."""

    start: int
    end: int
    kind: NodeKind


@dataclass(frozen=True)
class FunctionInfo:
    """One function of a file."""

    name: str
    qualname: str  # "Class.method", "outer.inner"
    signature: str  # "def name(args) -> returns:" (canonical, as ast.unparse writes it)
    docstring: str | None
    body: str  # the body's source lines, without the docstring
    called: tuple[str, ...]  # names it calls, as written ("len", "self.items.append"), sorted
    source: str  # the whole definition, decorators excluded
    span: Span  # of the body (what function-level masking hides)


class _Offsets:
    """Turns (line, UTF-8 byte column) from `ast` into character offsets into the source."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def __call__(self, lineno: int, col_offset: int) -> int:
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        return self.starts[lineno - 1] + len(line.encode("utf-8")[:col_offset].decode("utf-8", errors="ignore"))

    def line_start(self, offset: int, source: str) -> int:
        """`offset` moved back to its line's start when only indentation precedes it (keeps blocks dedentable)."""
        start = source.rfind("\n", 0, offset) + 1
        return start if source[start:offset].strip() == "" else offset


def _node_span(node: ast.AST, offsets: _Offsets, source: str, kind: NodeKind) -> Span:
    start = offsets(node.lineno, node.col_offset)  # type: ignore[attr-defined]
    end = offsets(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
    if kind == "statement":
        start = offsets.line_start(start, source)
    return Span(start, end, kind)


def _body_span(func: ast.FunctionDef | ast.AsyncFunctionDef, offsets: _Offsets, source: str) -> Span:
    """The span of a function's body without its docstring (or with it, when the docstring is all there is)."""
    body = func.body[1:] if ast.get_docstring(func) is not None and len(func.body) > 1 else func.body
    start = offsets.line_start(offsets(body[0].lineno, body[0].col_offset), source)
    return Span(start, offsets(body[-1].end_lineno, body[-1].end_col_offset), "body")  # type: ignore[arg-type]


def signature(func: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """`def name(args) -> returns:`, written by `ast.unparse` (comments and line breaks normalised)."""
    keyword = "async def" if isinstance(func, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(func.returns)}" if func.returns is not None else ""
    return f"{keyword} {func.name}({ast.unparse(func.args)}){returns}:"


def called_names(node: ast.AST) -> tuple[str, ...]:
    """The sorted distinct names called anywhere in `node`: `f(...)` → "f", `a.b.c(...)` → "a.b.c"."""
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            target = call.func
            while isinstance(target, ast.Attribute):
                target = target.value
            if isinstance(target, ast.Name):
                names.add(ast.unparse(call.func))
    return tuple(sorted(names))


def functions(source: str) -> list[FunctionInfo]:
    """Every function and method in `source`, in source order; raises SyntaxError for invalid Python."""
    tree = ast.parse(source)
    offsets = _Offsets(source)
    found: list[FunctionInfo] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{scope}{child.name}"
                span = _body_span(child, offsets, source)
                found.append(
                    FunctionInfo(
                        name=child.name,
                        qualname=qualname,
                        signature=signature(child),
                        docstring=ast.get_docstring(child),
                        body=source[span.start : span.end],
                        called=called_names(child),
                        source=source[offsets(child.lineno, child.col_offset) : span.end],
                        span=span,
                    )
                )
                visit(child, f"{qualname}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{scope}{child.name}.")
            else:
                visit(child, scope)

    visit(tree, "")
    return found


def node_spans(source: str, kinds: tuple[NodeKind, ...] = NODE_KINDS) -> list[Span]:
    """Spans of every whole statement, expression and function body in `source` (of the given kinds).

    A statement's span starts at its line's start when only indentation precedes it, so that a block
    dedents and parses on its own; an expression's span is exactly the expression.
    """
    tree = ast.parse(source)
    offsets = _Offsets(source)
    # An f-string's pieces have unreliable positions before Python 3.12 and do not parse alone: skip them.
    fstring_parts = {
        id(part) for joined in ast.walk(tree) if isinstance(joined, ast.JoinedStr) for part in ast.walk(joined)
    }
    spans = []
    for node in ast.walk(tree):
        if "body" in kinds and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            spans.append(_body_span(node, offsets, source))
        if "statement" in kinds and isinstance(node, ast.stmt):
            span = _node_span(node, offsets, source, "statement")
            if not source[span.start : span.end].lstrip().startswith("elif"):  # an `elif` is a nested If: not whole
                spans.append(span)
        if "expression" in kinds and isinstance(node, ast.expr) and id(node) not in fstring_parts:
            if not isinstance(node, PARTIAL_EXPRESSIONS):
                spans.append(_node_span(node, offsets, source, "expression"))
    return sorted(set(spans), key=lambda s: (s.start, s.end, s.kind))


def parses_alone(text: str, kind: NodeKind) -> bool:
    """Whether `text` is a whole node of `kind` on its own: an expression parses in parentheses; statements
    and bodies parse as a block (an indented one under `if True:`, since a string may hold unindented lines)."""
    try:
        if kind == "expression":
            ast.parse(f"(\n{text}\n)", mode="eval")
        else:
            ast.parse(f"if True:\n{text}" if text[:1].isspace() else text)
    except SyntaxError:
        return False
    return True
