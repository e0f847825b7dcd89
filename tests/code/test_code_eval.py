"""`evaluate.py eval=code`: pass@k per code task from replies judged in the sandbox, and an MBPP file as a row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from minigpt.code.code_eval import evaluate_code, judge_suite, mbpp_suite, show_code, task_suite
from minigpt.code.execution import Limits, Sandbox
from minigpt.code.program_tasks import CodeOutput
from minigpt.model.transformer import ModelConfig, Transformer
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(Limits(timeout=3.0))


def write_mbpp(path: Path) -> Path:
    """Two problems in MBPP's format, written here (MBPP ships in no package)."""
    rows = [
        {"task_id": 1, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b\n",
         "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]},
        {"task_id": 2, "text": "Write a function to reverse a string.", "code": "def rev(s):\n    return s[::-1]\n",
         "test_list": ["assert rev('ab') == 'ba'"]},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_pass_at_k_counts_replies_that_pass_every_test(sandbox: Sandbox) -> None:
    task = CodeOutput(seed=0)
    suite = task_suite("code_output", task, 2)
    gold = [ex.answer for ex in task.examples("test", 2)]
    # Prompt 1: one right reply of two; prompt 2: both wrong → pass@1 = (1/2 + 0) / 2, pass@2 = (1 + 0) / 2.
    row = judge_suite(suite, [[gold[0], "wrong"], ["wrong", "also wrong"]], [1, 2], sandbox, workers=2)
    assert row["pass@1"] == pytest.approx(0.25) and row["pass@2"] == pytest.approx(0.5)
    assert row["statuses"] == {"passed": 1, "failed": 3} and row["score"] == pytest.approx(0.25)


def test_an_mbpp_file_is_judged_on_all_its_tests(tmp_path: Path, sandbox: Sandbox) -> None:
    suite = mbpp_suite(str(write_mbpp(tmp_path / "mbpp.jsonl")), limit=10)
    assert suite.prompts[0].endswith("Your code should pass: assert add(1, 2) == 3")
    right = ["def add(a, b):\n    return a + b\n", "def rev(s):\n    return s[::-1]\n"]
    wrong = ["def add(a, b):\n    return a + b + (a < 0)\n", "def rev(s):\n    return s\n"]  # the first passes 1 of 2
    row = judge_suite(suite, [[right[0], wrong[0]], [right[1], wrong[1]]], [1], sandbox, workers=2)
    assert row["pass@1"] == pytest.approx(0.5) and row["score"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)


def test_eval_code_reports_every_task_for_a_model(tmp_path: Path) -> None:
    tokenizer = CharTokenizer.train("def return assert print 0123456789 abcdefghijklmnopqrstuvwxyz()[]:=+-*%'\"\n ,.?")
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=512, vocab_size=tokenizer.vocab_size))
    cfg = OmegaConf.create(
        {"seed": 0, "code": {"tasks": ["code_output", "code_error_line"], "n": 2, "k": [1, 2], "temperature": 1.0,
         "max_new_tokens": 4, "limit": 2, "workers": 2, "timeout": 3.0,
         "isolation": "process", "start": "fork", "mbpp": str(write_mbpp(tmp_path / "m.jsonl"))}}
    )  # fmt: skip
    results = evaluate_code(cfg, None, model, tokenizer)
    assert list(results) == ["code_output", "code_error_line", "mbpp"]
    for row in results.values():
        assert row["n"] == 2 and 0.0 <= row["pass@1"] <= row["pass@2"] <= 1.0 and sum(row["statuses"].values()) == 4
    with open(tmp_path / "table.txt", "w") as table:
        show_code(Console(file=table, width=200), results)
    assert "code_error_line" in (tmp_path / "table.txt").read_text()
    with pytest.raises(ConfigError, match="code.k"):
        evaluate_code(OmegaConf.merge(cfg, {"code": {"k": [3]}}), None, model, tokenizer)
    with pytest.raises(ConfigError, match="code.tasks"):
        evaluate_code(OmegaConf.merge(cfg, {"code": {"tasks": ["arithmetic"]}}), None, model, tokenizer)
