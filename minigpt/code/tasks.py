"""Synthetic function problems with hidden unit tests, sized for a tiny model (`task=code_functions`).

A prompt is a function's header and docstring, HumanEval style; the answer is its body:

    def compute(x):
        \"\"\"Return x plus 7.\"\"\"
    →       return x + 7

Each problem comes from a template and a constant k in 1..99. The templates are the cells of a small
docstring grammar (47 of them, `_grammar`):

    x <plus|minus|times> k                                          x + k, x - k, x * k
    the <sum|maximum|minimum|length> of xs <plus|minus|times> k     sum(xs) - k, max(xs) * k, len(xs) + k ...
    the length of <s|t|b> <plus|minus|times> k                      len(s) + k ...
    the <first|last> k <items|characters|bytes> of the <list xs|string s|tuple t|bytes b>   xs[:k], s[-k:] ...
    the <list xs|string s|tuple t|bytes b> without its <first|last> k <items|...>          xs[k:], s[:-k] ...
    the <list xs|string s|tuple t|bytes b> repeated k times         xs * k, s * k, t * k, b * k
    how many times k occurs in the list xs; the items of xs <greater|less> than k

The splits never share a template: the validation and test splits' templates (`VAL_TEMPLATES`,
`TEST_TEMPLATES`) are never trained on, so a model that scores on them has learned to read a docstring, not
to recall a body it has seen. What makes that a fair test rather than an impossible one, decided before any
measurement:

- **A held-out template is a cell whose row and column are both trained** (`last_chars`: "last" is
  trained on lists and tuples, "characters of the string s" with "first"; `sum_minus`: "sum" with plus and
  times, "minus" with x and three other aggregates), and every operation its body needs is taught
  (`operations` reads them from the reference bodies' syntax trees and a test checks the cover).
- **No docstring prefix determines the body.** With ten hand-picked templates (until session 13) each
  operation word occurred in one or two of them, and a model trained on them answered a held-out docstring
  with the body of the training docstring it most resembled (docs/code.md, "Training results"): "the sum of
  xs minus k" got `sum(xs) + k`, the only sum it had seen. In the grammar every docstring word of a held-out
  template occurs in at least two training templates (a test checks it), so a body can only be right if
  each word is read: the systematic-generalisation setting of SCAN (Lake & Baroni 2018).
- **The function's name does not reveal its template**: it is drawn from `NEUTRAL_NAMES` by a hash of the
  docstring, so every template uses every name and the model has to read the docstring (a model trained
  with names like `pad_94` learnt a table from names to bodies; docs/code.md, "Training results").
- **The argument's name is not the template's either** (session 14): a training prompt draws it from
  `Template.pool()` (by default one pool shared by every type, `SHARED_NAMES`; `arg_names=type` keeps a
  pool per type, `ARG_NAMES`), so a body has to copy it from the signature; held-out prompts keep the
  template's own name, and the function's name and hidden tests do not depend on it.
- **The hidden tests separate the plausible bodies**: integer inputs take both signs (`x % 39` and
  `x + 39` agree on −39…−1) and slicing templates see sequences both longer and shorter than k
  (`s[:50]` and `s` agree on every string of 50 characters or fewer); the filters and the count see items
  around k, k itself included (with items 0..9 and k up to 99, `return []` passed "greater than k").

The tests are hidden from the model and derived from the prompt alone (the docstring gives the template and
k, the header the function's name; inputs are drawn from a seed hashed from the prompt), so the gold scorer
needs nothing but the prompt and the reply, as every task's does. Scoring runs the reply in the sandbox
(`minigpt.code.judge`): the score is the share of the tests it passes.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minigpt.code.execution import Limits, Sandbox
from minigpt.code.judge import judge
from minigpt.code.problems import CodeProblem
from minigpt.tasks.base import SPLITS, Example, Task
from minigpt.utils.errors import ConfigError

# A problem's input drawer gets the rng, k and the test's index i, so that the tests of one problem can
# cover both sides of the boundary where plausible wrong bodies agree with the right one.


def _ints(rng: random.Random, k: int, i: int) -> int:
    """Non-negative on even tests, negative on odd ones: every problem's tests see both signs."""
    return rng.randint(0, 50) if i % 2 == 0 else rng.randint(-50, -1)


def _length(rng: random.Random, k: int, i: int) -> int:
    """Longer than k on even tests, at most k on odd ones (slicing by k must be seen to cut)."""
    return rng.randint(k + 1, k + 4) if i % 2 == 0 else rng.randint(0, k)


def _list(rng: random.Random, k: int, i: int) -> list[int]:
    return [rng.randint(0, 9) for _ in range(rng.randint(0, 8))]


def _long_list(rng: random.Random, k: int, i: int) -> list[int]:
    return [rng.randint(0, 9) for _ in range(_length(rng, k, i))]


def _word(rng: random.Random, k: int, i: int) -> str:
    return "".join(rng.choice("abcdefgh") for _ in range(rng.randint(0, 6)))


def _long_word(rng: random.Random, k: int, i: int) -> str:
    return "".join(rng.choice("abcdefgh") for _ in range(_length(rng, k, i)))


def _items(rng: random.Random, k: int, i: int) -> list[int]:
    """A non-empty list (for the maximum and minimum)."""
    return [rng.randint(0, 9) for _ in range(rng.randint(1, 8))]


def _tuple(rng: random.Random, k: int, i: int) -> tuple[int, ...]:
    return tuple(_list(rng, k, i))


def _long_tuple(rng: random.Random, k: int, i: int) -> tuple[int, ...]:
    return tuple(_long_list(rng, k, i))


def _near_k(rng: random.Random, k: int, i: int) -> list[int]:
    """Items around k, k itself included: with items 0..9 and k up to 99, `[x for x in xs if x > k]` and
    `xs.count(k)` would be [] and 0 on almost every test, which `return []` and `return 0` pass."""
    return [k] + [rng.randint(max(0, k - 3), k + 3) for _ in range(rng.randint(0, 7))]


def _bytes(rng: random.Random, k: int, i: int) -> bytes:
    return _word(rng, k, i).encode()


def _long_bytes(rng: random.Random, k: int, i: int) -> bytes:
    return _long_word(rng, k, i).encode()


Drawer = Callable[[random.Random, int, int], Any]  # a random input for (rng, k, test index)
NEUTRAL_NAMES = ("f", "g", "h", "func", "compute", "solve", "answer", "result")

# Argument names a training prompt may use instead of the template's own, drawn per problem
# (`CodeFunctions(arg_names=...)`): a body that must copy its argument from the signature cannot bind the
# name to the operation (the grammar split's SFT model answered "the list xs repeated k times" with
# `x * k`: the repetition right, the argument of "x times k"). `ARG_NAMES`: a pool per type (the template's
# own name first), disjoint. `SHARED_NAMES`: one pool for every template whose docstring names its kind
# anyway (all but "the length of <arg>", whose docstrings differ only in the argument): with per-type pools
# a model can still bind the name to the operation's family (docs/code.md). Held-out prompts keep the
# template's own name.
SHARED_NAMES = ("x", "y", "n", "xs", "ys", "s", "t", "b", "w", "data", "arg", "seq", "val", "obj")
ARG_NAMES: dict[str, tuple[str, ...]] = {
    "x": ("x", "n", "num", "value", "y"),
    "xs": ("xs", "nums", "values", "lst", "ys"),
    "s": ("s", "text", "word", "line", "name"),
    "t": ("t", "tup", "row", "entry", "ts"),
    "b": ("b", "data", "raw", "buf", "bs"),
}


@dataclass(frozen=True)
class Template:
    """One family of functions `<neutral name>(arg)` with a docstring and a reference body, both using k."""

    name: str
    arg: str
    doc: str  # with {k}
    body: str  # an expression in `arg` and {k}
    draw: Drawer

    def function_name(self, k: int) -> str:
        """A name that does not give the template away: chosen by a hash of the docstring (with the
        template's own argument name, so renaming the argument keeps the function's name and tests)."""
        digest = hashlib.sha256(self.doc.format(k=k).encode()).digest()
        return NEUTRAL_NAMES[digest[0] % len(NEUTRAL_NAMES)]

    def pool(self, shared: bool = True) -> tuple[str, ...]:
        """The argument names a prompt of this template may use: its type's pool, and with `shared` the
        shared pool too, unless its docstring is "the length of <arg>" (which only the name tells apart)."""
        if not shared or self.name.startswith("len_"):
            return ARG_NAMES[self.arg]
        return ARG_NAMES[self.arg] + tuple(n for n in SHARED_NAMES if n not in ARG_NAMES[self.arg])

    def _renamed(self, text: str, arg: str | None) -> str:
        """`text` with the argument, a whole word, renamed to `arg` (one of `self.pool()`)."""
        if arg is None or arg == self.arg:
            return text
        if arg not in self.pool():
            raise ValueError(f"Argument name {arg!r} is not in the pool {self.pool()} of {self.name}.")
        return re.sub(rf"\b{self.arg}\b", arg, text)

    def prompt(self, k: int, arg: str | None = None) -> str:
        """The header and docstring the model continues; `arg` renames the argument (default: `self.arg`)."""
        doc = self._renamed(self.doc.format(k=k), arg)
        return f'def {self.function_name(k)}({arg or self.arg}):\n    """{doc}"""\n'

    def answer(self, k: int, arg: str | None = None) -> str:
        """The reference body."""
        return f"    return {self._renamed(self.body.format(k=k), arg)}\n"

    def source(self, k: int, arg: str | None = None) -> str:
        """The whole reference function."""
        return self.prompt(k, arg) + self.answer(k, arg)

    def doc_pattern(self) -> re.Pattern[str]:
        """The docstring, quotes included, with k as a captured number and the argument as any name of its
        pool (the "length of" templates' pools are disjoint, so "the length of s" and "of xs" stay apart)."""
        before, after = self.doc.split("{k}")
        names = "|".join(map(re.escape, sorted(self.pool(), key=len, reverse=True)))
        escaped = [re.sub(rf"\b{self.arg}\b", f"(?:{names})", re.escape(part)) for part in (before, after)]
        return re.compile(re.escape('"""') + escaped[0] + r"(\d+)" + escaped[1] + re.escape('"""'))


def _grammar() -> list[Template]:
    """The templates: every cell of a small docstring grammar (module docstring). Each operation word and
    each argument occurs in several templates, so no prefix of a docstring determines the body."""
    ops = {"plus": "+", "minus": "-", "times": "*"}
    found = [
        Template(f"x_{word}", "x", f"Return x {word} {{k}}.", f"x {sym} {{k}}", _ints) for word, sym in ops.items()
    ]
    # Aggregates: "<aggregate> of <arg> <op> k", a list's sum/maximum/minimum/length, a sequence's length.
    aggregates: list[tuple[str, str, str, Drawer]] = [
        ("sum", "sum", "xs", _list),
        ("max", "maximum", "xs", _items),
        ("min", "minimum", "xs", _items),
    ]
    sized: tuple[tuple[str, Drawer], ...] = (("xs", _list), ("s", _word), ("t", _tuple), ("b", _bytes))
    aggregates += [(f"len_{arg}", "length", arg, draw) for arg, draw in sized]
    for name, word, arg, draw in aggregates:
        call = "len" if word == "length" else name
        for op, sym in ops.items():
            doc = f"Return the {word} of {arg} {op} {{k}}."
            found.append(Template(f"{name}_{op}", arg, doc, f"{call}({arg}) {sym} {{k}}", draw))
    # Slicing and repetition of the four sequences: "the first/last k <units> of the <kind> <arg>", "the <kind>
    # <arg> without its first/last k <units>", "the <kind> <arg> repeated k times".
    slices = {"first": "[:{k}]", "last": "[-{k}:]", "drop_first": "[{k}:]", "drop_last": "[:-{k}]"}
    for kind, arg, units, suffix, long_draw, draw in SEQUENCES:
        for name, cut in slices.items():
            where = name.removeprefix("drop_")
            if name.startswith("drop_"):
                doc = f"Return the {kind} {arg} without its {where} {{k}} {units}."
            else:
                doc = f"Return the {where} {{k}} {units} of the {kind} {arg}."
            found.append(Template(f"{name}_{suffix}", arg, doc, arg + cut, long_draw))
        found.append(
            Template(f"repeat_{kind}", arg, f"Return the {kind} {arg} repeated {{k}} times.", f"{arg} * {{k}}", draw)
        )
    # Filters and counting on a list, with items drawn around k (so that both sides of k and k itself occur).
    found.append(Template("count", "xs", "Return how many times {k} occurs in the list xs.", "xs.count({k})", _near_k))
    for name, word, sym in (("above", "greater", ">"), ("below", "less", "<")):
        doc = f"Return the items of xs {word} than {{k}}."
        found.append(Template(name, "xs", doc, f"[x for x in xs if x {sym} {{k}}]", _near_k))
    return found


# (kind, argument, units, name suffix, drawer of sequences around length k, drawer of short sequences)
SEQUENCES = (
    ("list", "xs", "items", "items", _long_list, _list),
    ("string", "s", "characters", "chars", _long_word, _word),
    ("tuple", "t", "items", "tuple", _long_tuple, _tuple),
    ("bytes", "b", "bytes", "bytes", _long_bytes, _bytes),
)
TEMPLATES = {t.name: t for t in _grammar()}
# Held out, each a cell of the grammar whose row and column are both trained (module docstring). The test
# templates are the ones held out since session 12. The validation templates follow a rule written down
# (session 14) before any model was measured on them: one cell per row family of the test split, in
# another column: a slice whose "without its" neighbour is trained (`first_tuple` ~ `last_chars`), a
# repetition (`repeat_tuple` ~ `repeat_list`; the bytes column keeps "repeated" in two training
# templates) and an aggregate with an operator (`max_times` ~ `sum_minus`).
VAL_TEMPLATES = frozenset({"first_tuple", "repeat_tuple", "max_times"})
TEST_TEMPLATES = frozenset({"last_chars", "repeat_list", "sum_minus"})
_PATTERNS = {name: t.doc_pattern() for name, t in TEMPLATES.items()}


def operations(template: Template) -> frozenset[str]:
    """The operations a template's reference body uses: its syntax node kinds (operators included) and the
    functions and methods it calls — what a held-out template must have been taught by training ones."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(template.body.format(k=1), mode="eval").body):
        found.add(type(node).__name__)
        if isinstance(node, ast.Call):
            func = node.func
            found.add(f"call {func.id if isinstance(func, ast.Name) else getattr(func, 'attr', '?')}")
    return frozenset(found - {"Name", "Load", "Store", "Constant"})


def find_template(text: str) -> tuple[Template, int]:
    """The template and constant of the first template docstring in `text` (a prompt that shows one)."""
    found = [
        (match.start(), TEMPLATES[name], int(match.group(1)))
        for name, p in _PATTERNS.items()
        if (match := p.search(text))
    ]
    if not found:
        raise ValueError(f"No template function in the prompt {text[:40]!r}.")
    _, template, k = min(found, key=lambda f: f[0])
    return template, k


def hidden_tests(template: Template, k: int, num_tests: int) -> tuple[str, ...]:
    """Asserts comparing the function with the reference on inputs drawn from a seed hashed from the
    function's prompt, so the same function always gets the same tests."""
    rng = random.Random(hashlib.sha256(template.prompt(k).encode()).digest())
    reference = eval(f"lambda {template.arg}: {template.body.format(k=k)}")  # our own template, not input
    name = template.function_name(k)
    inputs = [template.draw(rng, k, i) for i in range(num_tests)]
    return tuple(f"assert {name}({value!r}) == {reference(value)!r}" for value in inputs)


def split_of_template(name: str) -> str:
    """A template's split: the validation and test templates are never trained on."""
    return "test" if name in TEST_TEMPLATES else "val" if name in VAL_TEMPLATES else "train"


class ExecutedTask(Task):
    """A task whose gold scorer runs the reply: `code_problem(prompt)` gives the tests, and the score is
    the share of them the reply passes in the sandbox (`minigpt.code.judge`). Every code task with a
    program to run is one, so `stage.reward=execution` and `evaluate.py eval=code` take any of them."""

    sandbox: Sandbox | None = None  # started on the first score (probing the isolation costs a run)
    finite = True  # held-out templates and stdlib modules hold few distinct prompts (Task.finite)

    @abstractmethod
    def code_problem(self, prompt: str) -> CodeProblem:
        """The problem behind `prompt`: what the reply is judged by."""

    def score(self, prompt: str, completion: str) -> float:
        """The share of the prompt's tests the reply passes."""
        self.sandbox = self.sandbox or Sandbox(Limits(timeout=3.0))
        (verdict,) = judge(self.sandbox, [self.code_problem(prompt)], [completion], workers=1)
        return verdict.fraction


ARG_NAME_MODES = ("fixed", "type", "shared")


class CodeFunctions(ExecutedTask):
    """Write a function's body from its header and docstring; scored by hidden tests run in the sandbox.

    Args:
        seed: seeds example generation.
        max_k: the constants k run over 1..max_k (99 gives 41 × 99 = 4,059 training prompts).
        num_tests: hidden tests per problem.
        arg_names: training prompts' argument names: "fixed" (the template's own), "type" (drawn from its
            type's pool, `ARG_NAMES`) or "shared" (drawn from `Template.pool()`: the shared pool too).
            Held-out prompts keep the template's own name, so validation and test do not depend on it.
    """

    name = "code_functions"

    def __init__(self, seed: int = 0, max_k: int = 99, num_tests: int = 4, arg_names: str = "shared") -> None:
        super().__init__(seed)
        if max_k < 1 or num_tests < 1:
            raise ConfigError(f"task max_k={max_k}, num_tests={num_tests}: both must be at least 1.")
        if arg_names not in ARG_NAME_MODES:
            raise ConfigError(f"task arg_names={arg_names!r} is unknown; use one of {list(ARG_NAME_MODES)}.")
        self.max_k, self.num_tests, self.arg_names = max_k, num_tests, arg_names

    def example(self, template: Template, k: int, rng: random.Random) -> Example:
        """The problem `template`, k; a training one with an argument name drawn by `rng` (`arg_names`)."""
        vary = self.arg_names != "fixed" and split_of_template(template.name) == "train"
        arg = rng.choice(template.pool(shared=self.arg_names == "shared")) if vary else None
        return Example(template.prompt(k, arg), template.answer(k, arg))

    def generate(self, rng: random.Random) -> Example:
        """A random template and constant."""
        template = TEMPLATES[rng.choice(sorted(TEMPLATES))]
        return self.example(template, rng.randint(1, self.max_k), rng)

    def split_of(self, prompt: str) -> str:
        """By template: validation and test templates never appear in training."""
        return split_of_template(find_template(prompt)[0].name)

    def examples(self, split: str, n: int) -> list[Example]:
        """`n` distinct examples of `split`, the same every call: the split's templates × k, shuffled by the
        seed. Enumerated rather than rejection-sampled (`Task.examples`): a held-out split is 3 of 47
        templates, and random draws would miss some of its 297 prompts."""
        if split not in SPLITS:
            raise ConfigError(f"split={split!r} is unknown; use one of {list(SPLITS)}.")
        names = sorted(name for name in TEMPLATES if split_of_template(name) == split)
        rng = random.Random(f"{self.name}/{self.seed}/{split}")
        pool = [self.example(TEMPLATES[t], k, rng) for t in names for k in range(1, self.max_k + 1)]
        rng.shuffle(pool)
        return pool[:n]

    def code_problem(self, prompt: str) -> CodeProblem:
        """The prompt's problem: its hidden tests compare the function with the reference on drawn inputs."""
        template, k = find_template(prompt)
        tests = hidden_tests(template, k, self.num_tests)
        return CodeProblem(f"{self.name}/{template.name}_{k}", prompt, template.answer(k), "", tests)
