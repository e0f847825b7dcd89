"""Single-point AST mutations of Python code: the bugs of the repair task and the mutants of mutation testing.

A mutant differs from the original at exactly one node of the syntax tree (DeMillo, Lipton & Sayward 1978:
"hints on test data selection"; the competent-programmer hypothesis says real bugs are mostly this small).
Three kinds, the ones the issue names:

- **operator swap**: `+` ↔ `-`, `*` → `+`, `//` ↔ `%`, `>` ↔ `>=`, `<` ↔ `<=`, `==` ↔ `!=`, `and` ↔ `or`;
- **off-by-one**: an integer constant c → c + 1 or c − 1;
- **wrong name**: a variable read as another variable of the same function, or a builtin or method
  swapped for a look-alike (`min` ↔ `max`, `count` → `index`, `upper` ↔ `lower` …).

A mutant is written back with `ast.unparse`, so compare it with `normalise(original)`, not the original
text. Some mutants behave exactly like the original on every input a caller tries (an equivalent
mutant: `x > 0` → `x >= 0` where x is never 0); callers that need a real bug check it against tests.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Literal

MutationKind = Literal["operator", "off_by_one", "name"]
MUTATION_KINDS: tuple[MutationKind, ...] = ("operator", "off_by_one", "name")

BINARY_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.FloorDiv: ast.Mod,
    ast.Mod: ast.FloorDiv,
    ast.Div: ast.Mult,
}
COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}
BOOL_SWAPS: dict[type[ast.boolop], type[ast.boolop]] = {ast.And: ast.Or, ast.Or: ast.And}
# Look-alike callables: a wrong-name bug that still runs.
NAME_SWAPS = {
    "min": "max", "max": "min", "sum": "len", "len": "sum", "any": "all", "all": "any",
    "count": "index", "index": "count", "upper": "lower", "lower": "upper",
    "startswith": "endswith", "endswith": "startswith", "append": "extend", "sorted": "reversed",
}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One mutated program: which kind of bug, what changed, and the new source."""

    kind: MutationKind
    change: str  # e.g. "+ → -", "7 → 8", "xs → x"
    source: str


def normalise(source: str) -> str:
    """`source` as `ast.unparse` writes it (the form mutants are written in), with a final newline."""
    return ast.unparse(ast.parse(source)) + "\n"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring expressions (never mutated: they describe the intended behaviour)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.update(id(n) for n in ast.walk(first))
    return found


def _variables(tree: ast.AST) -> list[str]:
    """The function parameters and assigned names of the program, in order of first appearance."""
    names: list[str] = []
    for node in ast.walk(tree):
        name = node.arg if isinstance(node, ast.arg) else None
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            name = node.id
        if name is not None and name not in names:
            names.append(name)
    return names


def _edits(node: ast.AST, variables: list[str]) -> list[tuple[MutationKind, str, object]]:
    """Every single-point change at `node`: (kind, description, replacement value)."""
    edits: list[tuple[MutationKind, str, object]] = []
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_SWAPS:
        new = BINARY_SWAPS[type(node.op)]()
        edits.append(("operator", f"{_symbol(node.op)} → {_symbol(new)}", new))
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARE_SWAPS:
        new_cmp = COMPARE_SWAPS[type(node.ops[0])]()
        edits.append(("operator", f"{_symbol(node.ops[0])} → {_symbol(new_cmp)}", new_cmp))
    elif isinstance(node, ast.BoolOp):
        new_bool = BOOL_SWAPS[type(node.op)]()
        edits.append(("operator", f"{_symbol(node.op)} → {_symbol(new_bool)}", new_bool))
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        edits += [("off_by_one", f"{node.value} → {node.value + d}", node.value + d) for d in (1, -1)]
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        others = [v for v in variables if v != node.id] if node.id in variables else []
        swaps = [NAME_SWAPS[node.id]] if node.id in NAME_SWAPS else others
        edits += [("name", f"{node.id} → {new_name}", new_name) for new_name in swaps]
    elif isinstance(node, ast.Attribute) and node.attr in NAME_SWAPS:
        edits.append(("name", f".{node.attr} → .{NAME_SWAPS[node.attr]}", NAME_SWAPS[node.attr]))
    return edits


def _symbol(op: ast.AST) -> str:
    """The operator's text (`ast.unparse` of a tiny expression that uses it)."""
    if isinstance(op, ast.operator):
        return ast.unparse(ast.BinOp(ast.Name("a"), op, ast.Name("b")))[2:-2]
    if isinstance(op, ast.cmpop):
        return ast.unparse(ast.Compare(ast.Name("a"), [op], [ast.Name("b")]))[2:-2]
    return "and" if isinstance(op, ast.And) else "or"


def _apply(node: ast.AST, value: object) -> None:
    """Write `value` (from `_edits`) into `node`."""
    if isinstance(node, ast.BinOp | ast.BoolOp):
        node.op = value  # type: ignore[assignment]
    elif isinstance(node, ast.Compare):
        node.ops = [value]  # type: ignore[list-item]
    elif isinstance(node, ast.Constant) and isinstance(value, int):
        node.value = value
    elif isinstance(node, ast.Name):
        node.id = str(value)
    elif isinstance(node, ast.Attribute):
        node.attr = str(value)


def mutants(source: str, kinds: tuple[MutationKind, ...] = MUTATION_KINDS) -> list[Mutant]:
    """Every single-point mutant of `source` of the given kinds, in source order (docstrings untouched)."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    variables = _variables(tree)
    original = ast.unparse(tree)
    found: list[Mutant] = []
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        for kind, change, value in _edits(node, variables):
            if kind not in kinds:
                continue
            mutated = ast.parse(source)  # a fresh tree (faster than deepcopy); ast.walk visits it in the same order
            _apply(next(n for i, n in enumerate(ast.walk(mutated)) if i == index), value)
            text = ast.unparse(mutated)
            if text != original:
                found.append(Mutant(kind, change, text + "\n"))
    return found
