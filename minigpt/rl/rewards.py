"""Reward functions for RL stages: `reward(prompts, completions, tasks) -> Tensor (B,)`.

* `ModelReward`: a reward model trained by `stage=reward` (the RLHF recipe: a learned proxy of
  preferences, which a policy can over-optimise — Gao et al. 2022);
* `TaskReward`: a task's gold scorer as a *verifiable* reward (exact-match arithmetic, VADER sentiment);
* `ExecutionReward` (`minigpt.code.reward`): the share of a code problem's tests the reply passes, run in
  the sandbox, with a penalty for a timeout;
* `constitution`: the judges of the run's constitution (conf/constitution/default.yaml unless the stage is
  given another), gold minus violations (`minigpt.alignment.feedback.ConstitutionReward`, RL-CAI);
* `CountReward`: +1 per occurrence of a string — a toy reward whose optimum is obvious, for tests;
* `FunctionReward`: a user's function `fn(prompts, completions, tasks) -> scores`, given in the config
  as a `_target_` node (`stage.reward={_target_: my.module.fn, _partial_: true}`).

`build_reward(kind, ...)` picks one from the `stage.reward` setting. `check_finite` stops a run on a NaN
or infinite reward, naming the prompt and the reply that produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from minigpt.code.reward import ExecutionReward
from minigpt.model.heads import RewardScorer, load_reward_model
from minigpt.tasks.base import Task
from minigpt.utils.errors import ConfigError

if TYPE_CHECKING:
    from minigpt.rl.rollout import Rollout

REWARD_KINDS = ("model", "task", "count", "execution", "constitution")
DATA_REWARDS = ("task", "execution")  # built from the data's tasks, once the stage has its data


class RewardFunction(Protocol):
    """Scores (B,) of single-turn replies, one per (prompt, completion, task) row."""

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], tasks: Sequence[str | None]) -> Tensor:
        """The reward of each reply."""
        ...


class ModelReward(nn.Module):
    """A frozen reward model. An `nn.Module` so that it follows the stage to its device (and into DDP's
    view of frozen buffers); its weights never train."""

    def __init__(self, scorer: RewardScorer) -> None:
        super().__init__()
        self.scorer = scorer
        self.model = scorer.model.requires_grad_(False).eval()

    def forward(self, prompts: Sequence[str], completions: Sequence[str], tasks: Sequence[str | None]) -> Tensor:
        """The reward model's score of each (prompt, completion)."""
        self.model.eval()
        return self.scorer(prompts, completions)


class TaskReward:
    """The gold scorer of each row's task: a verifiable reward, no model to over-optimise."""

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        if not tasks:
            raise ConfigError("stage.reward=task needs prompts from tasks (data=prompts/<task>), not a JSONL file.")
        self.tasks = dict(tasks)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], tasks: Sequence[str | None]) -> Tensor:
        """`task.score(prompt, completion)` per row."""
        scores = []
        for prompt, completion, name in zip(prompts, completions, tasks):
            if name not in self.tasks:
                raise ConfigError(
                    f"Prompt {prompt!r} has no task with a gold scorer ({name!r}); use stage.reward=model."
                )
            scores.append(self.tasks[name].score(prompt, completion))
        return torch.tensor(scores, dtype=torch.float32)


class CountReward:
    """+1 for each occurrence of `text` in the reply (a toy reward: the policy should learn to repeat it)."""

    def __init__(self, text: str) -> None:
        if not text:
            raise ConfigError("stage.reward=count needs stage.count_text, the string to reward (e.g. 'a').")
        self.text = text

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], tasks: Sequence[str | None]) -> Tensor:
        """The number of occurrences per reply."""
        return torch.tensor([float(c.count(self.text)) for c in completions])


class FunctionReward:
    """A user's reward function, called on the whole batch; its scores come back as a float tensor (B,)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], tasks: Sequence[str | None]) -> Tensor:
        """`fn(prompts, completions, tasks)`, one score per row."""
        scores = torch.as_tensor(self.fn(list(prompts), list(completions), list(tasks)), dtype=torch.float32)
        if scores.shape != (len(completions),):
            name = getattr(self.fn, "__name__", repr(self.fn))
            raise ValueError(
                f"The reward function {name} returned shape {tuple(scores.shape)} for {len(completions)} replies; "
                "it must return one number per reply."
            )
        return scores


class RewardError(RuntimeError):
    """A reward that cannot be trained on (NaN or infinite): the run stops, naming the prompt and reply."""


def check_finite(rewards: Tensor, prompts: Sequence[str], completions: Sequence[str]) -> None:
    """Raise `RewardError` on the first NaN or infinite reward, naming its prompt and reply."""
    bad = torch.nonzero(~torch.isfinite(rewards))
    if len(bad):
        i = int(bad[0, 0])
        raise RewardError(
            f"The reward of the reply {completions[i]!r} to the prompt {prompts[i]!r} is {float(rewards[i])}; "
            "a reward must be a finite number: fix the reward function or reward model."
        )


def score_rollout(
    reward_fn: Callable[..., Any], tasks: Mapping[str, Task] | None, rollout: Rollout, device: torch.device
) -> tuple[Tensor, Tensor | None]:
    """The reward of each reply (N,), refused if not finite, and its gold score when every prompt has a task.

    The gold score is what the run is judged by; the reward is what it optimises (the same thing with
    `reward=task`, a learned or user-given proxy otherwise).
    """
    rewards = torch.as_tensor(reward_fn(rollout.prompts, rollout.completions, rollout.tasks), dtype=torch.float32)
    rewards = rewards.to(device)
    check_finite(rewards, rollout.prompts, rollout.completions)
    gold = None
    if tasks and all(t in tasks for t in rollout.tasks):
        rows = zip(rollout.prompts, rollout.completions, rollout.tasks)
        gold = torch.tensor([tasks[str(t)].score(p, c) for p, c, t in rows], device=device)
    return rewards, gold


def build_reward(
    kind: str | Callable[..., Any],
    reward_model: str | Path | None,
    tasks: Mapping[str, Task],
    count_text: str | None,
    truth_weight: float = 0.0,
    constitution: Any = None,
) -> RewardFunction:
    """The reward `stage.reward` names: `model` (needs `stage.reward_model`), `task`, `count`, `execution`
    (tasks with code problems), `constitution` (the judges of `constitution` — a built one, a name, or None for
    conf/constitution/default.yaml — with `truth_weight` for a true answer to a red prompt's sum), or a
    callable."""
    if callable(kind):
        return FunctionReward(kind)
    if kind not in REWARD_KINDS:
        raise ConfigError(f"stage.reward={kind!r} is unknown; use one of {list(REWARD_KINDS)}.")
    if kind == "model":
        if not reward_model:
            raise ConfigError(
                "stage.reward=model needs stage.reward_model=<model folder of a stage=reward run>; "
                "or use stage.reward=task for a task's gold scorer."
            )
        return ModelReward(load_reward_model(reward_model))
    if kind == "task":
        return TaskReward(tasks)
    if kind == "execution":
        return ExecutionReward(tasks)
    if kind == "constitution":
        from minigpt.alignment.constitution import load_constitution
        from minigpt.alignment.feedback import ConstitutionReward

        return ConstitutionReward(load_constitution(constitution or "default"), tasks, truth_weight)
    return CountReward(count_text or "")
