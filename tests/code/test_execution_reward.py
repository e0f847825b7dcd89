"""`stage.reward=execution`: the share of tests passed, a timeout penalty, and no reward for faking a pass."""

from __future__ import annotations

import pytest
import torch

from minigpt.code.execution import Limits, Sandbox
from minigpt.code.judge import judge
from minigpt.code.problems import CodeProblem
from minigpt.code.reward import ExecutionReward
from minigpt.rl.rewards import build_reward
from minigpt.utils.errors import ConfigError

DOUBLE = CodeProblem(
    task_id="double",
    prompt="def double(x):\n",
    canonical_solution="    return 2 * x\n",
    setup="",
    tests=("assert double(0) == 0", "assert double(2) == 4", "assert double(-3) == -6"),
)


class DoubleTask:
    """A code task of one problem, as a real code task would map its prompts to problems."""

    def code_problem(self, prompt: str) -> CodeProblem:
        assert prompt == DOUBLE.prompt
        return DOUBLE


@pytest.fixture(scope="module")
def reward() -> ExecutionReward:
    return ExecutionReward({"double": DoubleTask()}, Sandbox(Limits(timeout=1.5)), timeout_penalty=0.5, workers=3)


def test_reward_is_the_share_of_tests_passed_minus_a_timeout_penalty(reward: ExecutionReward) -> None:
    completions = [
        "    return 2 * x\n",  # all three
        "    return x + 2\n",  # double(2) == 4 only: 1 of 3
        "    return abs(2 * x)\n",  # 0 and 2, not -3: 2 of 3
        "    return 2 * x +\n",  # a syntax error: nothing runs
        "    while True:\n        pass\n",  # never returns: the first test hangs
        "    import sys\n    sys.exit(0)\n",  # exits in every test: each exit is caught, none passes
    ]
    scores = reward([DOUBLE.prompt] * 6, completions, ["double"] * 6)
    expected = torch.tensor([1.0, 1 / 3, 2 / 3, 0.0, -0.5, 0.0])
    assert torch.allclose(scores, expected)


def test_exiting_before_the_tests_or_printing_a_fake_verdict_earns_nothing() -> None:
    sandbox = Sandbox(Limits(timeout=1.5))
    cheats = [
        "    pass\nimport os\nos._exit(0)\n",  # status 0 before any test
        "    pass\nprint('PASSED 3 3')\nraise SystemExit(0)\n",  # a verdict without the marker
        "    pass\nprint(open(__file__).read())\n",  # the program file is gone: its marker cannot be read back
    ]
    verdicts = judge(sandbox, [DOUBLE] * 3, cheats, workers=3)
    assert [v.fraction for v in verdicts] == [0.0, 0.0, 0.0]
    assert verdicts[0].result.status == "failed" and "before its tests" in verdicts[0].result.error


def test_build_reward_registers_execution_and_refuses_tasks_without_tests() -> None:
    assert isinstance(build_reward("execution", None, {"double": DoubleTask()}, None), ExecutionReward)  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="stage.reward=execution needs prompts from a code task"):
        build_reward("execution", None, {}, None)


def test_a_failed_verdict_names_the_failing_tests() -> None:
    (verdict,) = judge(Sandbox(Limits(timeout=1.5)), [DOUBLE], ["    return x + 2\n"])
    assert verdict.fraction == pytest.approx(1 / 3) and verdict.result.status == "failed"
    assert (
        "2 of 3 tests failed" in verdict.result.error
        and "assert double(-3) == -6: AssertionError" in verdict.result.error
    )
