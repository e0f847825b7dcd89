"""Repair and unit-test generation (`task=code_repair`, `task=code_unit_tests`), built on mutants.

Both start from a function of the synthetic templates (`minigpt.code.tasks`: `add_7`, `first_3` …) and
its single-point AST mutants (`minigpt.code.mutation`), keeping only mutants that fail at least one of
the function's hidden tests — a real bug, never an equivalent mutant.

- **Repair**: the prompt shows a mutant ("Fix the bug:" and the function); the reply is the whole fixed
  function, scored by the share of the hidden tests it passes in the sandbox (the broken one fails ≥ 1).
- **Unit-test generation**: the prompt shows the correct function; the reply is asserts (the gold: the
  shortest of the hidden tests that kill every mutant). They are run on
  the function (they must hold there) and on up to `num_mutants` mutants (each should make them fail):
  the score is the *mutation score*, the share of mutants killed by asserts that hold on the original
  (DeMillo et al. 1978; a reply whose asserts fail on the function, or that asserts nothing, scores 0).

Splits are by template, the same as `code_functions`': a test-split function's template is never seen in
training by any of the three tasks.
"""

from __future__ import annotations

import functools
import hashlib
import random

from minigpt.code.mutation import Mutant, mutants, normalise
from minigpt.code.problems import CodeProblem
from minigpt.code.tasks import TEMPLATES, ExecutedTask, Template, find_template, hidden_tests, split_of_template
from minigpt.tasks.base import Example
from minigpt.utils.errors import ConfigError


def _fails(source: str, test: str) -> bool:
    """Whether `test` fails on the function `source` (run here: our template code and our asserts only)."""
    namespace: dict[str, object] = {}
    try:
        exec(source, namespace)  # a template function or its mutant, not a model's output
        exec(test, namespace)
    except Exception:
        return True
    return False


@functools.lru_cache(maxsize=4096)
def breaking_mutants(template: Template, k: int, num_tests: int) -> tuple[Mutant, ...]:
    """Mutants of `<template>_<k>` that fail at least one of its hidden tests.

    The check runs in this process: the mutated code is one of our own template functions with one node
    changed (no loops, no I/O), not a model's output.
    """
    tests = hidden_tests(template, k, num_tests)
    return tuple(m for m in mutants(normalise(template.source(k))) if any(_fails(m.source, t) for t in tests))


class _MutantTask(ExecutedTask):
    """Shared by repair and unit tests: a template function, its breaking mutants, splits by template."""

    def __init__(self, seed: int = 0, max_k: int = 99, num_tests: int = 4) -> None:
        super().__init__(seed)
        if max_k < 1 or num_tests < 1:
            raise ConfigError(f"task max_k={max_k}, num_tests={num_tests}: both must be at least 1.")
        self.max_k, self.num_tests = max_k, num_tests

    def draw(self, rng: random.Random) -> tuple[Template, int, tuple[Mutant, ...]]:
        """A template, a constant and the function's breaking mutants (drawn again if it has none)."""
        while True:
            template = TEMPLATES[rng.choice(sorted(TEMPLATES))]
            k = rng.randint(1, self.max_k)
            broken = breaking_mutants(template, k, self.num_tests)
            if broken:
                return template, k, broken

    def split_of(self, prompt: str) -> str:
        """By template, as `code_functions`."""
        return split_of_template(find_template(prompt)[0].name)


class CodeRepair(_MutantTask):
    """Fix a function broken by one AST mutation; scored by the function's hidden tests in the sandbox.

    Args:
        seed: seeds example generation.
        max_k: the template constants run over 1..max_k.
        num_tests: hidden tests per function.
    """

    name = "code_repair"

    def generate(self, rng: random.Random) -> Example:
        """A mutant to fix; the answer is the original function."""
        template, k, broken = self.draw(rng)
        return Example(f"Fix the bug:\n{rng.choice(broken).source}", normalise(template.source(k)))

    def code_problem(self, prompt: str) -> CodeProblem:
        """The reply is a whole function, run with the original's hidden tests."""
        template, k = find_template(prompt)
        tests = hidden_tests(template, k, self.num_tests)
        answer = normalise(template.source(k))
        return CodeProblem(f"{self.name}/{template.name}_{k}", prompt, answer, "", tests, prefix_prompt=False)


MAX_ANSWER_CHARS = 200  # unit tests' gold asserts (`repeat_99('abcdef')` would need ~600 characters)

# Runs in the sandbox: the reply's asserts (`COMPLETION`) on one version of the function.
_HOLDS = """
def _holds(function_source):
    namespace = {}
    try:
        exec(function_source, namespace)
        exec(COMPLETION, namespace)
    except Exception:
        return False
    return True
"""


class CodeUnitTests(_MutantTask):
    """Write asserts for a function; scored by the mutation score of asserts that hold on the function.

    Args:
        seed: seeds example generation.
        max_k: the template constants run over 1..max_k.
        num_tests: hidden tests per function (the mutants kept must fail one; the gold answer is them).
        num_mutants: mutants the asserts are run on (fewer when the function has fewer breaking mutants).
    """

    name = "code_unit_tests"

    def __init__(self, seed: int = 0, max_k: int = 99, num_tests: int = 4, num_mutants: int = 4) -> None:
        super().__init__(seed, max_k, num_tests)
        if num_mutants < 1:
            raise ConfigError(f"task num_mutants={num_mutants} must be at least 1.")
        self.num_mutants = num_mutants

    def generate(self, rng: random.Random) -> Example:
        """The correct function; the gold asserts are the shortest of its hidden tests that kill every
        mutant the prompt is scored on (greedy, shortest first: a tiny model should not have to write
        `'abc' * 99` out)."""
        while True:  # a function whose asserts would not fit a small context is drawn again
            template, k, _ = self.draw(rng)
            prompt = f"Write asserts for:\n{normalise(template.source(k))}"
            alive, gold = list(self.chosen_mutants(template, k, prompt)), []
            for test in sorted(hidden_tests(template, k, self.num_tests), key=len):
                killed = [m for m in alive if _fails(m.source, test)]
                if killed:
                    gold.append(test)
                    alive = [m for m in alive if m not in killed]
            answer = "\n".join(gold) + "\n"
            if len(answer) <= MAX_ANSWER_CHARS:
                return Example(prompt, answer)

    def chosen_mutants(self, template: Template, k: int, prompt: str) -> list[Mutant]:
        """The breaking mutants the prompt's asserts are run on: up to `num_mutants`, drawn from its hash."""
        broken = breaking_mutants(template, k, self.num_tests)
        rng = random.Random(hashlib.sha256(prompt.encode()).digest())
        return rng.sample(broken, min(self.num_mutants, len(broken)))

    def code_problem(self, prompt: str) -> CodeProblem:
        """One test per mutant: the asserts hold on the original and fail on that mutant."""
        template, k = find_template(prompt)
        chosen = self.chosen_mutants(template, k, prompt)
        setup = "\n".join(
            [f"_ORIGINAL = {normalise(template.source(k))!r}", f"_MUTANTS = {[m.source for m in chosen]!r}", _HOLDS]
        )
        tests = tuple(f"assert _holds(_ORIGINAL) and not _holds(_MUTANTS[{i}])" for i in range(len(chosen)))
        gold = "\n".join(hidden_tests(template, k, self.num_tests)) + "\n"  # kills them all (a longer gold)
        return CodeProblem(f"{self.name}/{template.name}_{k}", prompt, gold, setup, tests, quote_completion=True)
