"""Code–comment alignment on the standard library: docstring → function and function → docstring.

Both draw from the self-contained standard-library functions whose behaviour was recorded
(`minigpt.code.stdlib_functions`, ~100 functions from ~40 modules). The splits are by module: a hash of
the module's name orders the modules, which fill the test and validation splits up to 15% of the
functions each; all of a module's functions are in one split, so no test function shares a module with a
training one (and none shares its text: a prompt found in two modules is kept once).

- `task=code_from_docstring`: the prompt is the signature and docstring (HumanEval's form), the reply the
  body; scored in the sandbox by the recorded asserts — the share on which it behaves like the original.
- `task=code_to_docstring`: the prompt is the function without its docstring, the reply a one-line
  summary. There is no program to run for prose, so this scorer is *not* executed: it is the word-level
  F1 of the reply against the docstring's first paragraph (the overlap of lower-cased words, as ROUGE-1 F1).

These tasks are finite (`Task.finite`): asking for more examples of a split than it holds returns all
of them, with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from abc import abstractmethod
from collections import Counter

from minigpt.code.problems import CodeProblem
from minigpt.code.stdlib_functions import StdlibFunction, stdlib_functions
from minigpt.code.tasks import ExecutedTask
from minigpt.tasks.base import Example, Task

HELD_OUT_SHARE = 0.15  # of the functions, at most, in each of the test and validation splits


def split_hash(*parts: str) -> str:
    """A stable order for modules (sha256 of their names)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def docstring_prompt(function: StdlibFunction) -> str:
    """`def name(args):` and the docstring, indented as in a function body."""
    doc = function.docstring.replace("\n", "\n    ")
    return f'{function.signature}\n    """{doc}"""\n'


def summary(function: StdlibFunction) -> str:
    """The docstring's first paragraph on one line (a first line may stop mid-sentence)."""
    return " ".join(function.docstring.strip().split("\n\n")[0].split())


def word_f1(reply: str, reference: str) -> float:
    """F1 of the lower-cased word multisets of `reply` and `reference` (ROUGE-1 F1)."""
    got, want = (Counter(re.findall(r"[a-z0-9]+", text.lower())) for text in (reply, reference))
    overlap = sum((got & want).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(got.values()), overlap / sum(want.values())
    return 2 * precision * recall / (precision + recall)


class _StdlibTask(Task):
    """A finite task over the recorded standard-library functions, split by module.

    Args:
        seed: orders each split's examples.
        cache_dir: where the recorded functions are cached (null: the default cache).
        max_files: read only the first standard-library files (a quick, smaller task for tests).
    """

    finite = True

    def __init__(self, seed: int = 0, cache_dir: str | None = None, max_files: int | None = None) -> None:
        super().__init__(seed)
        self.cache_dir, self.max_files = cache_dir, max_files

    @functools.cached_property
    def by_prompt(self) -> dict[str, tuple[StdlibFunction, str]]:
        """prompt → (function, answer); a prompt that two modules share is kept once (the first)."""
        table: dict[str, tuple[StdlibFunction, str]] = {}
        for function in stdlib_functions(self.cache_dir, self.max_files):
            table.setdefault(*self.example_of(function))
        return table

    @abstractmethod
    def example_of(self, function: StdlibFunction) -> tuple[str, tuple[StdlibFunction, str]]:
        """(prompt, (function, answer)) for one function."""

    def split_of(self, prompt: str) -> str:
        """The split of the prompt's module: a hash of the module's name, the same for both tasks (a
        function tested in one is never trained on in the other)."""
        if prompt not in self.by_prompt:
            raise ValueError(f"Not a {self.name} prompt: {prompt[:40]!r}.")
        return self.module_splits[self.by_prompt[prompt][0].module]

    @functools.cached_property
    def module_splits(self) -> dict[str, str]:
        """module → split. Modules in the order of a hash of their names fill the test split, then the
        validation split, up to `HELD_OUT_SHARE` of the functions each (a module that would overflow one
        goes on to the next); the rest train. A plain hash per module would leave a split nearly empty:
        one module (`operator`) holds a third of the functions."""
        sizes = Counter(function.module for function, _ in self.by_prompt.values())
        total, filled = sum(sizes.values()), Counter[str]()
        splits = {}
        for module in sorted(sizes, key=lambda m: split_hash("stdlib_module", m)):
            split = next((s for s in ("test", "val") if filled[s] + sizes[module] <= HELD_OUT_SHARE * total), "train")
            filled[split] += sizes[module]
            splits[module] = split
        return splits

    def generate(self, rng: random.Random) -> Example:
        """A random function of any split."""
        prompt = rng.choice(self.prompts)
        return Example(prompt, self.by_prompt[prompt][1])

    @functools.cached_property
    def prompts(self) -> list[str]:
        """Every prompt, sorted."""
        return sorted(self.by_prompt)


class CodeFromDocstring(_StdlibTask, ExecutedTask):
    """Write a standard-library function's body from its signature and docstring; scored by its recorded
    behaviour in the sandbox (see the module docstring for the options)."""

    name = "code_from_docstring"

    def example_of(self, function: StdlibFunction) -> tuple[str, tuple[StdlibFunction, str]]:
        """The signature and docstring → the body."""
        return docstring_prompt(function), (function, function.body.rstrip() + "\n")

    def code_problem(self, prompt: str) -> CodeProblem:
        """The prompt continued by the reply, run with the recorded asserts."""
        function, answer = self.by_prompt[prompt]
        return CodeProblem(f"{self.name}/{function.module}.{function.name}", prompt, answer, "", function.tests)


class CodeToDocstring(_StdlibTask):
    """Summarise a standard-library function in one line; scored by word F1 against its docstring's first
    paragraph (not executed: see the module docstring)."""

    name = "code_to_docstring"

    def example_of(self, function: StdlibFunction) -> tuple[str, tuple[StdlibFunction, str]]:
        """The function without its docstring → the docstring's first paragraph, on one line."""
        return f"Summarise in one line:\n{function.signature}\n{function.body.rstrip()}\n", (
            function,
            summary(function),
        )

    def score(self, prompt: str, completion: str) -> float:
        """Word F1 of the reply's first line against the summary."""
        if prompt not in self.by_prompt:
            raise ValueError(f"Not a {self.name} prompt: {prompt[:40]!r}.")
        first_line = (completion.strip().splitlines() or [""])[0]
        return word_f1(first_line, self.by_prompt[prompt][1])
