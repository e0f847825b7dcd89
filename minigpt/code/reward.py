"""`stage.reward=execution`: the reward of a code reply is the share of its problem's tests it passes.

An RL reward that cannot be argued with: the reply is run in the sandbox against the tests
(`minigpt.code.judge`), all replies of a batch in parallel. A reply that runs out of time gets
`-timeout_penalty` on top of its (then zero) share: an infinite loop must score below a wrong answer,
or the policy has no reason to prefer code that stops.

Which tests belong to a prompt is the prompt's task's business: a task that can be judged by execution
has a `code_problem(prompt) -> CodeProblem` method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from minigpt.code.execution import Limits, Sandbox
from minigpt.code.judge import judge
from minigpt.code.problems import CodeProblem
from minigpt.utils.errors import ConfigError


@runtime_checkable
class CodeTask(Protocol):
    """A task whose prompts are code problems with tests."""

    def code_problem(self, prompt: str) -> CodeProblem:
        """The problem (and so the tests) behind `prompt`."""
        ...


class ExecutionReward:
    """Fraction of tests passed per reply, minus `timeout_penalty` for a reply that ran out of time."""

    def __init__(
        self,
        tasks: Mapping[str, object],
        sandbox: Sandbox | None = None,
        timeout_penalty: float = 0.5,
        workers: int = 4,
    ) -> None:
        code_tasks = {name: task for name, task in tasks.items() if isinstance(task, CodeTask)}
        if not code_tasks:
            raise ConfigError(
                "stage.reward=execution needs prompts from a code task (one with tests to run); "
                f"the data's tasks are {sorted(tasks) or 'none'}: use stage.reward=task for those."
            )
        self.tasks = code_tasks
        self.sandbox = sandbox or Sandbox(Limits(timeout=3.0))
        self.timeout_penalty = timeout_penalty
        self.workers = workers

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], tasks: Sequence[str | None]) -> Tensor:
        """The reward of each reply, judged in parallel."""
        problems = []
        for prompt, name in zip(prompts, tasks, strict=True):
            if name not in self.tasks:
                raise ConfigError(
                    f"Prompt {prompt!r} is not from a code task ({name!r}); stage.reward=execution needs one."
                )
            problems.append(self.tasks[str(name)].code_problem(prompt))
        verdicts = judge(self.sandbox, problems, completions, self.workers)
        scores = [v.fraction - (self.timeout_penalty if v.result.status == "timeout" else 0.0) for v in verdicts]
        return torch.tensor(scores, dtype=torch.float32)
