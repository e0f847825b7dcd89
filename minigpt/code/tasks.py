"""Synthetic function problems with hidden unit tests, sized for a tiny model (`task=code_functions`).

A prompt is a function's header and docstring, HumanEval style; the answer is its body:

    def add_7(x):
        \"\"\"Return x plus 7.\"\"\"
    →       return x + 7

Each problem comes from a template (add, times, first, repeat …) and a constant k in 1..99. The splits
never share a template: the test split's templates (`TEST_TEMPLATES`) and the validation split's are
never trained on, so a model that scores on them has learned to read a docstring, not to recall
a body it has seen. The tests are hidden from the model and derived from the prompt alone (the function's
name names its template and k; inputs are drawn from a seed hashed from the prompt), so the gold scorer
needs nothing but the prompt and the reply, as every task's does. Scoring runs the reply in the sandbox
(`minigpt.code.judge`): the score is the share of the tests it passes.
"""

from __future__ import annotations

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


def _ints(rng: random.Random) -> int:
    return rng.randint(-50, 50)


def _list(rng: random.Random) -> list[int]:
    return [rng.randint(0, 9) for _ in range(rng.randint(0, 8))]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefgh") for _ in range(rng.randint(0, 6)))


@dataclass(frozen=True)
class Template:
    """One family of functions: `name_k(arg)` with a docstring and a reference body, both using k."""

    name: str
    arg: str
    doc: str  # with {k}
    body: str  # an expression in `arg` and {k}
    draw: Callable[[random.Random], Any]  # a random input

    def prompt(self, k: int) -> str:
        """The header and docstring the model continues."""
        return f'def {self.name}_{k}({self.arg}):\n    """{self.doc.format(k=k)}"""\n'

    def answer(self, k: int) -> str:
        """The reference body."""
        return f"    return {self.body.format(k=k)}\n"

    def source(self, k: int) -> str:
        """The whole reference function."""
        return self.prompt(k) + self.answer(k)


TEMPLATES = {
    t.name: t
    for t in (
        Template("add", "x", "Return x plus {k}.", "x + {k}", _ints),
        Template("times", "x", "Return x times {k}.", "x * {k}", _ints),
        Template("minus", "x", "Return x minus {k}.", "x - {k}", _ints),
        Template("first", "xs", "Return the first {k} items of the list xs.", "xs[:{k}]", _list),
        Template("last", "xs", "Return the last {k} items of the list xs.", "xs[-{k}:]", _list),
        Template("repeat", "s", "Return the string s repeated {k} times.", "s * {k}", _word),
        Template("count", "xs", "Return how many times {k} occurs in the list xs.", "xs.count({k})", _list),
        Template("above", "xs", "Return the items of xs greater than {k}.", "[x for x in xs if x > {k}]", _list),
        Template("drop", "s", "Return the string s without its first {k} characters.", "s[{k}:]", _word),
        Template("sum_plus", "xs", "Return the sum of xs plus {k}.", "sum(xs) + {k}", _list),
        Template("mod", "x", "Return the remainder of x divided by {k}.", "x % {k}", _ints),
        Template("pad", "s", "Return s followed by {k} exclamation marks.", "s + '!' * {k}", _word),
    )
}
VAL_TEMPLATES = frozenset({"drop"})
TEST_TEMPLATES = frozenset({"mod", "pad"})
_HEADER = re.compile(r"def ([a-z_]+)_(\d+)\(")


def find_template(text: str) -> tuple[Template, int]:
    """The template and constant of the first `def <template>_<k>(` in `text` (a prompt that shows one)."""
    match = _HEADER.search(text)
    if match is None or match.group(1) not in TEMPLATES:
        raise ValueError(f"No template function in the prompt {text[:40]!r}.")
    return TEMPLATES[match.group(1)], int(match.group(2))


def hidden_tests(template: Template, k: int, num_tests: int) -> tuple[str, ...]:
    """Asserts comparing `<template>_<k>` with the reference on inputs drawn from a seed hashed from the
    function's prompt, so the same function always gets the same tests."""
    rng = random.Random(hashlib.sha256(template.prompt(k).encode()).digest())
    reference = eval(f"lambda {template.arg}: {template.body.format(k=k)}")  # our own template, not input
    name = f"{template.name}_{k}"
    return tuple(
        f"assert {name}({value!r}) == {reference(value)!r}" for value in (template.draw(rng) for _ in range(num_tests))
    )


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
