"""Judge completions of code problems by running their tests in the sandbox: the fraction of tests passed.

Each completion becomes one program: the solution, the problem's setup, then a harness that runs every
test statement on its own (one failing assert does not hide the others) and prints a verdict line. The
verdict starts with a random marker drawn per program, and only a verdict that carries it counts. This
closes the cheap ways to fake a pass: a solution that calls `exit()` or `os._exit(0)` before the tests
run leaves the process with status 0 but prints no verdict, and one that prints "all passed" cannot know
the marker (the sandbox deletes the program file before the solution's first line, so it cannot read the
marker back from disk). A determined program could still find it in the interpreter's memory; the
judge guards against accidents and lazy policies, not against an adversary (docs/code.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from minigpt.code.execution import Result, Sandbox
from minigpt.code.languages import get_language
from minigpt.code.problems import CodeProblem
from minigpt.utils.errors import ConfigError

_HARNESS = """
import sys


def _minigpt_judge(tests):
    passed = 0
    for test in tests:
        try:
            exec(test, globals())
            passed += 1
        except BaseException as err:  # SystemExit too: a test that exits has not passed
            print(f"{{test}}: {{type(err).__name__}}: {{err}}", file=sys.stderr)
    print({marker!r}, passed, len(tests), flush=True)


_minigpt_judge({tests!r})
"""


@dataclass
class Verdict:
    """How one completion fared: the share of its tests that passed, and the sandbox's result."""

    passed: int
    total: int
    result: Result

    @property
    def fraction(self) -> float:
        """Tests passed / tests (0 when the program never reached its verdict)."""
        return self.passed / self.total if self.total else 0.0

    @property
    def all_passed(self) -> bool:
        """Every test passed: what pass@k counts."""
        return self.total > 0 and self.passed == self.total


def judged_program(problem: CodeProblem, completion: str, marker: str) -> str:
    """The solution, the setup and the harness that prints `marker passed total`."""
    return "\n".join([problem.solution(completion), problem.setup, _HARNESS.format(marker=marker, tests=problem.tests)])


def read_verdict(result: Result, marker: str, total: int) -> Verdict:
    """The verdict line carrying `marker` in the output; a program without one passed nothing."""
    for line in reversed(result.stdout.splitlines()):
        fields = line.split()
        if len(fields) == 3 and fields[0] == marker and fields[2] == str(total):
            passed = int(fields[1])
            if passed < total:  # the harness ran to its end, but not every test passed
                failures = "\n".join(result.stderr.strip().splitlines()[-3:])
                result.status, result.error = "failed", f"{total - passed} of {total} tests failed:\n{failures}"
            return Verdict(passed, total, result)
    if result.status == "passed":
        result.status, result.error = "failed", "the program exited before its tests ran to the end"
    return Verdict(0, total, result)


def judge(
    sandbox: Sandbox, problems: Sequence[CodeProblem], completions: Sequence[str], workers: int = 4
) -> list[Verdict]:
    """Run each completion against its problem's tests, `workers` at a time; verdicts in order.

    Only Python is run (`minigpt.code.languages`): a problem in another language is refused here.
    """
    for problem in problems:
        if not get_language(problem.language).executed:
            raise ConfigError(
                f"Problem {problem.task_id} is {problem.language}, which the sandbox does not run (Python only)."
            )
    markers = [secrets.token_hex(16) for _ in completions]
    programs = [judged_program(p, c, m) for p, c, m in zip(problems, completions, markers, strict=True)]
    results = sandbox.run_many(programs, workers=workers)
    return [read_verdict(r, m, len(p.tests)) for r, m, p in zip(results, markers, problems, strict=True)]
