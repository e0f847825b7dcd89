"""`task=code_functions`: template-level splits, tests derived from the prompt, executed scores."""

from __future__ import annotations

import pytest

from minigpt.code.reward import CodeTask, ExecutionReward
from minigpt.code.tasks import TEST_TEMPLATES, VAL_TEMPLATES, CodeFunctions


@pytest.fixture(scope="module")
def task() -> CodeFunctions:
    return CodeFunctions(seed=0)


def template_of(prompt: str) -> str:
    return prompt.split("(")[0].removeprefix("def ").rsplit("_", 1)[0]


def test_splits_never_share_a_template(task: CodeFunctions) -> None:
    train = {template_of(ex.prompt) for ex in task.examples("train", 200)}
    val = {template_of(ex.prompt) for ex in task.examples("val", 20)}
    test = {template_of(ex.prompt) for ex in task.examples("test", 40)}
    assert test == TEST_TEMPLATES and val == VAL_TEMPLATES and not train & (val | test)


def test_reference_bodies_pass_and_wrong_ones_fail(task: CodeFunctions) -> None:
    examples = task.examples("test", 4)
    assert [task.score(ex.prompt, ex.answer) for ex in examples] == [1.0] * 4
    assert task.score(examples[0].prompt, "    return None\n") == 0.0


def test_tests_come_from_the_prompt_alone(task: CodeFunctions) -> None:
    prompt = task.examples("train", 1)[0].prompt
    assert CodeFunctions(seed=5).code_problem(prompt) == task.code_problem(prompt)
    assert len(task.code_problem(prompt).tests) == 4


def test_it_is_a_code_task_for_the_execution_reward(task: CodeFunctions) -> None:
    assert isinstance(task, CodeTask)
    ex = task.examples("val", 1)[0]
    rewards = ExecutionReward({"code_functions": task}, workers=2)(
        [ex.prompt] * 2, [ex.answer, "    return 0\n"], ["code_functions"] * 2
    )
    assert rewards[0] == 1.0 and rewards[1] < 1.0
