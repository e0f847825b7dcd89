"""Synthetic function problems with hidden unit tests, sized for a tiny model (`task=code_functions`).

A prompt is a function's header and docstring, HumanEval style; the answer is its body:

    def compute(x):
        \"\"\"Return x plus 7.\"\"\"
    →       return x + 7

Each problem comes from a template (add, times, first, repeat …) and a constant k in 1..99. The splits
never share a template: the validation and test splits' templates (`VAL_TEMPLATES`, `TEST_TEMPLATES`) are
never trained on, so a model that scores on them has learned to read a docstring, not to recall a body it
has seen. What makes that a fair test rather than an impossible one, decided before any measurement:

- **Every operation a held-out template needs is taught by a training template; only the combination and
  the wording are new** (`operations` reads them from the reference bodies' syntax trees and a test checks
  the cover). A held-out template is a training operation on the other kind of sequence (the first k
  *characters of the string s*, where training shows the first k *items of the list xs*) or a training
  aggregate combined with another training operator (the sum of xs *minus* k, where training shows the sum
  of xs *plus* k and x minus k).
- **The function's name does not reveal its template**: it is drawn from `NEUTRAL_NAMES` by a hash of the
  docstring, so every template uses every name and the model has to read the docstring (a model trained
  with names like `pad_94` learnt a table from names to bodies; docs/code.md, "Training results").
- **The hidden tests separate the plausible bodies**: integer inputs take both signs (`x % 39` and
  `x + 39` agree on −39…−1) and slicing templates see sequences both longer and shorter than k
  (`s[:50]` and `s` agree on every string of 50 characters or fewer).

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
from minigpt.tasks.base import Example, Task
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


NEUTRAL_NAMES = ("f", "g", "h", "func", "compute", "solve", "answer", "result")


@dataclass(frozen=True)
class Template:
    """One family of functions `<neutral name>(arg)` with a docstring and a reference body, both using k."""

    name: str
    arg: str
    doc: str  # with {k}
    body: str  # an expression in `arg` and {k}
    draw: Callable[[random.Random, int, int], Any]  # a random input for (rng, k, test index)

    def function_name(self, k: int) -> str:
        """A name that does not give the template away: chosen by a hash of the docstring."""
        digest = hashlib.sha256(self.doc.format(k=k).encode()).digest()
        return NEUTRAL_NAMES[digest[0] % len(NEUTRAL_NAMES)]

    def prompt(self, k: int) -> str:
        """The header and docstring the model continues."""
        return f'def {self.function_name(k)}({self.arg}):\n    """{self.doc.format(k=k)}"""\n'

    def answer(self, k: int) -> str:
        """The reference body."""
        return f"    return {self.body.format(k=k)}\n"

    def source(self, k: int) -> str:
        """The whole reference function."""
        return self.prompt(k) + self.answer(k)

    def doc_pattern(self) -> re.Pattern[str]:
        """The docstring, quotes included, with k as a captured number."""
        before, after = self.doc.split("{k}")
        return re.compile(re.escape(f'"""{before}') + r"(\d+)" + re.escape(f'{after}"""'))


TEMPLATES = {
    t.name: t
    for t in (
        # Training templates.
        Template("add", "x", "Return x plus {k}.", "x + {k}", _ints),
        Template("times", "x", "Return x times {k}.", "x * {k}", _ints),
        Template("minus", "x", "Return x minus {k}.", "x - {k}", _ints),
        Template("first", "xs", "Return the first {k} items of the list xs.", "xs[:{k}]", _long_list),
        Template("last", "xs", "Return the last {k} items of the list xs.", "xs[-{k}:]", _long_list),
        Template("repeat", "s", "Return the string s repeated {k} times.", "s * {k}", _word),
        Template("drop", "s", "Return the string s without its first {k} characters.", "s[{k}:]", _long_word),
        Template("count", "xs", "Return how many times {k} occurs in the list xs.", "xs.count({k})", _list),
        Template("above", "xs", "Return the items of xs greater than {k}.", "[x for x in xs if x > {k}]", _list),
        Template("sum_plus", "xs", "Return the sum of xs plus {k}.", "sum(xs) + {k}", _list),
        # Held-out: a training operation on the other sequence type, or a training aggregate with another
        # training operator (module docstring).
        Template("first_chars", "s", "Return the first {k} characters of the string s.", "s[:{k}]", _long_word),
        Template("sum_times", "xs", "Return the sum of xs times {k}.", "sum(xs) * {k}", _list),
        Template("last_chars", "s", "Return the last {k} characters of the string s.", "s[-{k}:]", _long_word),
        Template("repeat_list", "xs", "Return the list xs repeated {k} times.", "xs * {k}", _list),
        Template("sum_minus", "xs", "Return the sum of xs minus {k}.", "sum(xs) - {k}", _list),
    )
}
VAL_TEMPLATES = frozenset({"first_chars", "sum_times"})
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


class CodeFunctions(ExecutedTask):
    """Write a function's body from its header and docstring; scored by hidden tests run in the sandbox.

    Args:
        seed: seeds example generation.
        max_k: the constants k run over 1..max_k (99 gives ~900 training prompts).
        num_tests: hidden tests per problem.
    """

    name = "code_functions"

    def __init__(self, seed: int = 0, max_k: int = 99, num_tests: int = 4) -> None:
        super().__init__(seed)
        if max_k < 1 or num_tests < 1:
            raise ConfigError(f"task max_k={max_k}, num_tests={num_tests}: both must be at least 1.")
        self.max_k, self.num_tests = max_k, num_tests

    def generate(self, rng: random.Random) -> Example:
        """A random template and constant."""
        template = TEMPLATES[rng.choice(sorted(TEMPLATES))]
        k = rng.randint(1, self.max_k)
        return Example(template.prompt(k), template.answer(k))

    def split_of(self, prompt: str) -> str:
        """By template: validation and test templates never appear in training."""
        return split_of_template(find_template(prompt)[0].name)

    def code_problem(self, prompt: str) -> CodeProblem:
        """The prompt's problem: its hidden tests compare the function with the reference on drawn inputs."""
        template, k = find_template(prompt)
        tests = hidden_tests(template, k, self.num_tests)
        return CodeProblem(f"{self.name}/{template.name}_{k}", prompt, template.answer(k), "", tests)
