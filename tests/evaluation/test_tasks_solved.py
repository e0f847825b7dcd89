"""`evaluate_tasks_solved`: the mean gold score and the share solved outright (greedy pass@1 for code)."""

from __future__ import annotations

from typing import Any

import pytest

from minigpt.evaluation import tasks as task_eval
from minigpt.tasks.base import get_task


def test_solved_counts_only_full_scores_while_the_mean_counts_partial_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    graded = [1.0, 0.5, 0.25, 1.0]  # a code task's shares of hidden tests passed

    def fake_results(model: Any, tokenizer: Any, task: Any, split: str, n: int) -> list[tuple[str, str, float]]:
        return [("prompt", "reply", score) for score in graded[:n]]

    monkeypatch.setattr(task_eval, "task_results", fake_results)
    task = get_task("arithmetic")
    means, solved = task_eval.evaluate_tasks_solved(None, None, {"code": task}, "test", 4)  # type: ignore[arg-type]
    assert means == {"code": pytest.approx(0.6875)} and solved == {"code": 0.5}
    assert task_eval.evaluate_tasks(None, None, {"code": task}, "test", 4) == means  # type: ignore[arg-type]
