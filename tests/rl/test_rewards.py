"""Reward functions: gold scorers per task, the toy count, clear errors (reward model: tests/stages/test_ppo.py)."""

import pytest

from minigpt.rl.rewards import CountReward, TaskReward, build_reward
from minigpt.tasks import get_task
from minigpt.utils.errors import ConfigError


def test_task_and_count_rewards():
    reward = TaskReward({"arithmetic": get_task("arithmetic")})
    scores = reward(["what is 2 plus 3?", "what is 2 plus 3?"], ["5", "6"], ["arithmetic", "arithmetic"])
    assert scores.tolist() == [1.0, 0.0]
    with pytest.raises(ConfigError, match="no task with a gold scorer"):
        reward(["hi"], ["5"], [None])
    assert CountReward("a")(["p", "p"], ["banana", "xyz"], [None, None]).tolist() == [3.0, 0.0]


def test_build_reward_errors_name_the_fix():
    with pytest.raises(ConfigError, match="stage.reward_model"):
        build_reward("model", None, {}, None)
    with pytest.raises(ConfigError, match="stage.reward='gold'"):
        build_reward("gold", None, {}, None)
    with pytest.raises(ConfigError, match="stage.count_text"):
        build_reward("count", None, {}, "")
    with pytest.raises(ConfigError, match="data=prompts/<task>"):
        build_reward("task", None, {}, None)
