"""Program understanding: output prediction and error diagnosis on short generated programs.

- `task=code_output`: "What does this print?" and a 2–6 line program (loops, conditions, strings, lists,
  dicts, a function call); the reply is the printed text. Checked by running the program in the sandbox
  and comparing what it printed with the reply (trailing white space ignored).
- `task=code_error_line`: a program with its lines numbered and the error it ended with; the reply is
  the number of the line that raised. Checked by running the program in the sandbox and reading the
  line from its traceback. The traceback's frame lines are not shown: they name the line, and the task
  would be copying it. Each program holds several lines that *could* raise that error (several
  divisions, several indexings), so the values must be traced to tell which one did.

Each program comes from a template with random constants; the splits are by template (the test split's
templates are never trained on), like `code_functions`'. The gold answer shown for training is computed by
running the template's program here (our own generated code, no input from a model); the scorer runs it
again in the sandbox, so a template bug could never make a wrong gold score.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import keyword
import random
import re
import traceback
from abc import abstractmethod
from collections.abc import Callable

from minigpt.code.problems import CodeProblem
from minigpt.code.tasks import ExecutedTask
from minigpt.tasks.base import Example

Program = Callable[[random.Random], str]
WORDS = ("apple", "banana", "cherry", "kiwi", "lemon", "mango", "pear", "plum", "grape", "melon")


def _ints(rng: random.Random, n: int, lo: int = 0, hi: int = 9) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n)]


def _letters(rng: random.Random) -> str:
    return "".join(rng.choice("abc") for _ in range(rng.randint(3, 6)))


OUTPUT_PROGRAMS: dict[str, Program] = {
    "loop_sum": lambda r: (
        f"total = 0\nfor i in range({r.randint(1, 6)}):\n    total += i * {r.randint(1, 5)}\nprint(total)\n"
    ),
    "slice": lambda r: f"s = {r.choice(WORDS)!r}\nprint(s[{r.randint(0, 2)}:{r.randint(3, 5)}])\n",
    "list_ops": lambda r: f"xs = {_ints(r, 3)}\nxs.append({r.randint(0, 9)})\nxs.sort()\nprint(xs)\n",
    "branch": lambda r: (
        f"x = {r.randint(1, 30)}\nif x % 2 == 0:\n    print('even', x // 2)\nelse:\n    print('odd', x * 3 + 1)\n"
    ),
    "function": lambda r: (
        f"def f(x):\n    return x * {r.randint(2, 4)} + {r.randint(0, 5)}\nprint(f({r.randint(0, 5)}))\n"
    ),
    "upper": lambda r: f"s = {r.choice(WORDS)!r}\nprint(s.upper(), len(s))\n",
    "max_min": lambda r: f"xs = {_ints(r, 4)}\nprint(max(xs) - min(xs))\n",
    "while": lambda r: (
        f"n = {r.randint(10, 30)}\nsteps = 0\nwhile n > {r.randint(0, 9)}:\n"
        f"    n -= {r.randint(2, 6)}\n    steps += 1\nprint(steps, n)\n"
    ),
    "comprehension": lambda r: f"print([x * {r.randint(2, 9)} for x in range({r.randint(1, 6)})])\n",
    "count": lambda r: (
        f"counts = {{}}\nfor ch in {_letters(r)!r}:\n    counts[ch] = counts.get(ch, 0) + 1\nprint(counts)\n"
    ),
    "join": lambda r: f"print({r.choice('-+,')!r}.join(str(i) for i in range({r.randint(0, 5)}, {r.randint(4, 9)})))\n",
}
OUTPUT_SPLITS = {"comprehension": "val", "count": "test", "join": "test"}


def _raising_lines(r: random.Random, make: Callable[[int, bool], str], n: int = 3) -> list[str]:
    """`n` lines from `make(i, raises)` of which exactly one (a random one) raises."""
    bad = r.randrange(n)
    return [make(i, i == bad) for i in range(n)]


def _divide(r: random.Random) -> str:
    xs = [0 if r.random() < 0.3 else r.randint(1, 9) for _ in range(3)]
    xs[r.randrange(3)] = 0  # at least one zero: the first one in order raises
    return f"xs = {xs}\n" + "".join(f"{v} = 100 // xs[{i}]\n" for i, v in enumerate("abc")) + "print(a + b + c)\n"


def _index(r: random.Random) -> str:
    n = r.randint(2, 5)
    lines = _raising_lines(r, lambda i, bad: f"print(xs[{n + r.randint(0, 2) if bad else r.randint(0, n - 1)}])\n")
    return f"xs = list(range({n}))\n" + "".join(lines)


def _key(r: random.Random) -> str:
    keys = r.sample(WORDS, 3)
    missing = r.choice([w for w in WORDS if w not in keys])
    lines = _raising_lines(r, lambda i, bad: f"print(prices[{missing if bad else r.choice(keys)!r}])\n")
    return f"prices = {{{', '.join(f'{k!r}: {r.randint(1, 9)}' for k in keys)}}}\n" + "".join(lines)


def _parse(r: random.Random) -> str:
    values = [str(r.randint(0, 99)) for _ in range(3)]
    values[r.randrange(3)] = r.choice(WORDS)
    return f"values = {values}\n" + "".join(f"n{i} = int(values[{i}])\n" for i in range(3)) + "print(n0 + n1 + n2)\n"


def _name(r: random.Random) -> str:
    name = r.choice(("total", "count", "price", "width"))
    typo = name[0] + name[2] + name[1] + name[3:]
    lines = _raising_lines(r, lambda i, bad: f"print({typo if bad else name} + {i})\n")
    return f"{name} = {r.randint(1, 9)}\n" + "".join(lines)


def _attribute(r: random.Random) -> str:
    word, number = r.choice(WORDS), r.randint(1, 9)
    lines = _raising_lines(r, lambda i, bad: f"print({'n' if bad else 's'}.upper())\n")
    return f"s = {word!r}\nn = {number}\n" + "".join(lines)


ERROR_PROGRAMS: dict[str, Program] = {
    "divide": _divide, "index": _index, "key": _key, "parse": _parse, "name": _name, "attribute": _attribute,
}  # fmt: skip
ERROR_SPLITS = {"name": "val", "parse": "test", "attribute": "test"}

# Runs in the sandbox: the program under a name of its own, so its frames are told apart from the harness's.
_RUN = """
import contextlib, io, re, traceback
_out = io.StringIO()
_line = None
try:
    with contextlib.redirect_stdout(_out):
        exec(compile(PROGRAM, "<program>", "exec"), {"__name__": "__main__"})
except Exception as _err:
    _line = [f.lineno for f in traceback.extract_tb(_err.__traceback__) if f.filename == "<program>"][-1]
_numbers = re.findall(r"\\d+", COMPLETION)
"""


def run_here(program: str) -> tuple[str, int | None, str]:
    """(what `program` prints, the line that raised or None, the error's last line) — run in this process;
    only for programs generated from our templates (the gold answers)."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(program, "<program>", "exec"), {"__name__": "__main__"})  # our template's program
    except Exception as err:
        frames = [f.lineno for f in traceback.extract_tb(err.__traceback__) if f.filename == "<program>"]
        return out.getvalue(), frames[-1], f"{type(err).__name__}: {err}"
    return out.getvalue(), None, ""


class _ProgramTask(ExecutedTask):
    """A task over generated programs: a template per family, splits by template."""

    programs: dict[str, Program]
    splits: dict[str, str]

    def template(self, rng: random.Random) -> tuple[str, str]:
        """(template name, program)."""
        name = rng.choice(sorted(self.programs))
        return name, self.programs[name](rng)

    def split_of(self, prompt: str) -> str:
        """By template: each template's programs have a recognisable shape, found again from the prompt."""
        return self.splits.get(self.template_of(prompt), "train")

    def template_of(self, prompt: str) -> str:
        """The template that generated the prompt's program (its shape is unique to the template)."""
        shape = _shape(self.program_of(prompt))
        for name, make in self.programs.items():
            if _shape(make(random.Random(0))) == shape:
                return name
        raise ValueError(f"The prompt's program matches no {self.name} template: {prompt[:60]!r}.")

    @abstractmethod
    def program_of(self, prompt: str) -> str:
        """The program the prompt shows."""


_TOKEN = re.compile(r"'[^']*'|\d+|\.?[A-Za-z_]\w*")
_KEPT_NAMES = frozenset(keyword.kwlist) | frozenset(dir(builtins))


def _shape(program: str) -> str:
    """A program with its constants and its own variable names blanked (keywords, builtins and attributes
    kept): the same for every program of one template, different between templates (a test checks both)."""

    def blank(match: re.Match[str]) -> str:
        token = match.group()
        if token[0] in "'0123456789":
            return "#"
        return token if token.startswith(".") or token in _KEPT_NAMES else "v"

    return _TOKEN.sub(blank, program)


class CodeOutput(_ProgramTask):
    """Predict what a short program prints; checked by running it in the sandbox.

    Args:
        seed: seeds example generation.
    """

    name = "code_output"
    programs = OUTPUT_PROGRAMS
    splits = OUTPUT_SPLITS

    def generate(self, rng: random.Random) -> Example:
        """A program and what it prints."""
        _, program = self.template(rng)
        printed, _, _ = run_here(program)
        return Example(f"What does this print?\n{program}", printed.rstrip())

    def program_of(self, prompt: str) -> str:
        """Everything after the question line."""
        return prompt.split("\n", 1)[1]

    def code_problem(self, prompt: str) -> CodeProblem:
        """One test: the program's printed text equals the reply (trailing white space ignored)."""
        program = self.program_of(prompt)
        setup = f"PROGRAM = {program!r}\n{_RUN}"
        tests = ("assert _out.getvalue().rstrip() == COMPLETION.rstrip() and _line is None",)
        answer, _, _ = run_here(program)
        return CodeProblem(
            f"{self.name}/{self.template_of(prompt)}", prompt, answer.rstrip(), setup, tests, quote_completion=True
        )


class CodeErrorLine(_ProgramTask):
    """Name the line that raised, given the numbered program and its error; checked by running it.

    Args:
        seed: seeds example generation.
    """

    name = "code_error_line"
    programs = ERROR_PROGRAMS
    splits = ERROR_SPLITS

    def generate(self, rng: random.Random) -> Example:
        """A numbered program, its error, and the failing line's number."""
        _, program = self.template(rng)
        _, line, error = run_here(program)
        numbered = "".join(f"{i} {text}\n" for i, text in enumerate(program.splitlines(), start=1))
        return Example(f"Which line failed?\n{numbered}{error}", str(line))

    def program_of(self, prompt: str) -> str:
        """The numbered lines, numbers removed (the first line is the question, the last the error)."""
        lines = prompt.split("\n")[1:-1]
        return "".join(line.split(" ", 1)[1] + "\n" for line in lines)

    def code_problem(self, prompt: str) -> CodeProblem:
        """One test: the first number in the reply is the line the program's traceback ends at."""
        program = self.program_of(prompt)
        setup = f"PROGRAM = {program!r}\n{_RUN}"
        tests = ("assert _line is not None and _numbers[:1] == [str(_line)]",)
        _, line, _ = run_here(program)
        return CodeProblem(
            f"{self.name}/{self.template_of(prompt)}", prompt, str(line), setup, tests, quote_completion=True
        )
