"""HumanEval through our engine (all canonical solutions pass, a wrong one fails) and the MBPP-format loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minigpt.code.execution import Limits, Sandbox
from minigpt.code.problems import load_humaneval, load_mbpp_jsonl
from minigpt.utils.errors import DataError


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(Limits(timeout=10))


@pytest.mark.slow
def test_humaneval_canonical_solutions_all_pass_and_a_wrong_one_fails(sandbox: Sandbox) -> None:
    # ~20 s on 2 shared cores: 164 fresh interpreters, two at a time.
    problems = load_humaneval()
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    results = sandbox.run_many([p.program(p.canonical_solution) for p in problems], workers=2)
    failures = {p.task_id: r.error for p, r in zip(problems, results, strict=True) if not r.passed}
    assert failures == {}
    wrong = problems[0].program("    return False\n")  # has_close_elements: always "no"
    result = sandbox.run(wrong)
    assert result.status == "failed" and "AssertionError" in result.error


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_mbpp_format_problems_load_and_judge(tmp_path: Path, sandbox: Sandbox) -> None:
    path = write_jsonl(
        tmp_path / "mbpp.jsonl",
        [
            {
                "task_id": 11,
                "text": "Write a function to add two numbers.",
                "code": "def add(a, b):\n    return a + b",
                "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
            },
            {
                "text": "Write a function that returns pi to two places.",
                "code": "def pi2():\n    return round(math.pi, 2)",
                "test_setup_code": "import math",
                "test_list": ["assert pi2() == 3.14"],
            },
        ],
    )
    problems = load_mbpp_jsonl(path)
    assert [p.task_id for p in problems] == ["11", "mbpp/2"] and problems[0].prompt.startswith("Write a function")
    results = sandbox.run_many([p.program(p.canonical_solution) for p in problems], workers=2)
    assert [r.status for r in results] == ["passed", "passed"]
    assert sandbox.run(problems[0].program("def add(a, b):\n    return a - b")).status == "failed"


def test_a_bad_mbpp_line_names_the_file_line_and_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "no code here", "test_list": []}])
    with pytest.raises(DataError, match=r"bad.jsonl line 1: needs the fields text, code, test_list"):
        load_mbpp_jsonl(path)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match="line 1: is not JSON"):
        load_mbpp_jsonl(path)
