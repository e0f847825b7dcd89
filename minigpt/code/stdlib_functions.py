"""Self-contained standard-library functions with tests recorded from their own behaviour.

The docstring ↔ function tasks need real code with real comments, and an executed gold scorer for the
code. The standard library has both; what it lacks is tests for arbitrary functions. So we keep the
functions that can be tested without their module — module-level, documented, at most `MAX_BODY_LINES`
lines, reading no name but their parameters, their own locals and harmless builtins (no `open`, `eval`,
`getattr` …) — and record their behaviour: each is called in the sandbox on argument tuples drawn from a
small pool of values (numbers, strings, lists, bytes …), and the calls that return a literal (a value
`ast.literal_eval` reads back equal) become asserts, `assert name(args) == result`. This is differential
testing against the original: a reply passes when it behaves like the standard library's own code on
those inputs. Functions with fewer than two such calls, or whose calls all return the same value, are
dropped (a constant function is barely tested by them).

Recording runs every candidate once in one sandboxed program (a 0.2 s timer per call) and caches the
result as JSON per Python version; later runs read the cache.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import logging
import sys
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

from minigpt.code.ast_tools import functions
from minigpt.code.execution import Limits, Sandbox
from minigpt.data.assets import cache_root
from minigpt.data.corpora import PythonStdlib
from minigpt.utils.io import atomic_write_text

log = logging.getLogger(__name__)

MAX_BODY_LINES = 8
MAX_DOCSTRING_CHARS = 240
UNSAFE_BUILTINS = frozenset(
    {"open", "exec", "eval", "compile", "print", "input", "__import__", "globals", "locals", "vars", "breakpoint",
     "exit", "quit", "help", "setattr", "delattr", "getattr", "memoryview"}
)  # fmt: skip
SAFE_BUILTINS = frozenset(dir(builtins)) - UNSAFE_BUILTINS
TESTS_PER_FUNCTION = 4

# Runs in the sandbox: call each function on drawn arguments, print one JSON line per function.
_RECORDER = r"""
import ast, copy, json, random, signal

POOL = [0, 1, 2, 3, 5, -1, 10, 255, 2.5, "", "a", "abc", "Hello World", "a,b", "x=1; y=2", " pad ", "A_B",
        "/usr/lib/x.py", [], [1, 2, 3], [3, 1, 2], (1, 2), {"a": 1}, True, False, None, b"abc", b""]


class _Late(Exception):
    pass


def _late(signum, frame):
    raise _Late()


signal.signal(signal.SIGALRM, _late)
for index, (name, source, arity) in enumerate(CANDIDATES):
    namespace = {}
    try:
        exec(source, namespace)
    except Exception:
        continue
    function = namespace[name]
    rng = random.Random(name)
    found = {}
    for _ in range(60):
        args = tuple(rng.choice(POOL) for _ in range(arity))
        key = repr(args)
        if key in found:
            continue
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        try:
            result = function(*copy.deepcopy(args))
        except BaseException:
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            text = repr(result)
            if len(text) <= 60 and ast.literal_eval(text) == result:
                found[key] = text
        except Exception:
            pass
    print(json.dumps([index, sorted(found.items())]), flush=True)
"""


@dataclass(frozen=True)
class StdlibFunction:
    """One function: where it is from, its parts, and asserts recorded from its behaviour."""

    module: str
    name: str
    signature: str
    docstring: str
    body: str
    tests: tuple[str, ...]


def _self_contained(node: ast.FunctionDef) -> bool:
    """Reads nothing but its parameters, its locals and safe builtins; no imports, nested scopes or yields."""
    args = node.args
    if args.vararg or args.kwarg or args.kwonlyargs or node.decorator_list or not (args.posonlyargs + args.args):
        return False
    nested = (
        ast.Import,
        ast.ImportFrom,
        ast.Global,
        ast.Nonlocal,
        ast.Yield,
        ast.YieldFrom,
        ast.Lambda,
        ast.FunctionDef,
    )
    inner = [n for n in ast.walk(node) if n is not node]
    if any(isinstance(n, nested + (ast.ClassDef, ast.AsyncFunctionDef)) for n in inner):
        return False
    params = {a.arg for a in args.posonlyargs + args.args}
    stored = {n.id for n in inner if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    loaded = {n.id for n in inner if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loaded - params - stored <= SAFE_BUILTINS


def candidates(files: list[Path], root: Path) -> list[tuple[str, ast.FunctionDef, str]]:
    """(module, node, source) of every self-contained, documented, short module-level function."""
    found = []
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not _self_contained(node):
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) > MAX_DOCSTRING_CHARS or "\\" in doc or '"""' in doc or len(node.body) < 2:
                continue
            if ast.unparse(ast.Module(node.body[1:], [])).count("\n") + 1 <= MAX_BODY_LINES:
                found.append((module, node, ast.get_source_segment(source, node) or ""))
    return found


def record(found: list[tuple[str, ast.FunctionDef, str]], sandbox: Sandbox) -> list[StdlibFunction]:
    """Run the recorder on every candidate; keep those with ≥ 2 literal results, not all equal."""
    entries = [(node.name, ast.unparse(node), len(node.args.posonlyargs + node.args.args)) for _, node, _ in found]
    result = sandbox.run(f"CANDIDATES = {entries!r}\n{_RECORDER}")
    calls = dict(json.loads(line) for line in result.stdout.splitlines() if line.startswith("["))
    kept = []
    for index, (module, node, source) in enumerate(found):
        pairs = calls.get(index, [])
        by_result: dict[str, str] = {}
        for args, value in pairs:  # one call per distinct result first: the tests should tell inputs apart
            by_result.setdefault(value, args)
        chosen = list(by_result.items())[:TESTS_PER_FUNCTION]
        chosen += [(v, a) for a, v in pairs if (v, a) not in chosen][: TESTS_PER_FUNCTION - len(chosen)]
        if len(chosen) < 2 or len(by_result) < 2:
            continue
        info = next(f for f in functions(source) if f.name == node.name)
        tests = tuple(f"assert {node.name}({_arguments(args)}) == {value}" for value, args in chosen)
        kept.append(StdlibFunction(module, node.name, info.signature, info.docstring or "", info.body, tests))
    if result.status != "passed":
        log.warning("Recording standard-library functions ended with %s: %s", result.status, result.error)
    return kept


def _arguments(args: str) -> str:
    """A call's argument list from the repr of its tuple: "(1, 'a')" → "1, 'a'"."""
    return ", ".join(repr(value) for value in ast.literal_eval(args))


def stdlib_functions(cache_dir: str | None = None, max_files: int | None = None) -> list[StdlibFunction]:
    """The recorded functions of this Python's standard library (cached per Python version and file set)."""
    corpus = PythonStdlib(max_files)
    key = hashlib.sha256(f"{sys.version}|{corpus.fingerprint}|{_RECORDER}".encode()).hexdigest()[:16]
    path = cache_root(cache_dir) / "code" / f"stdlib_functions-{key}.json"
    if path.exists():
        return [StdlibFunction(**{**d, "tests": tuple(d["tests"])}) for d in json.loads(path.read_text())]
    root = Path(sysconfig.get_paths()["stdlib"])
    kept = record(candidates(corpus.files, root), Sandbox(Limits(timeout=120.0, memory_bytes=1 << 30)))
    atomic_write_text(path, json.dumps([asdict(f) for f in kept], indent=1))
    return kept
