"""Task scores a stage logs at validation: greedy exact-match (SFT) or the gold score of samples (DPO).

Both read the tasks and the number of validation prompts from the stage's `StageInputs`, and log one
metric per task, `<name>/<task>`, plus their mean under `<name>`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import lightning as L
from torch import Tensor

from minigpt.evaluation.gold import gold_eval
from minigpt.evaluation.tasks import evaluate_tasks
from minigpt.model.transformer import Transformer
from minigpt.rl.rollout import Rollout
from minigpt.stages.inputs import StageInputs
from minigpt.tokenizer.base import Tokenizer

if TYPE_CHECKING:
    from minigpt.stages.base import Stage


def greedy_task_scores(model: Transformer, tokenizer: Tokenizer, inputs: StageInputs) -> dict[str, float]:
    """{task: mean gold score of greedy replies} on `inputs.num_eval` validation prompts of each task."""
    return evaluate_tasks(model, tokenizer, inputs.tasks, split="val", n=inputs.num_eval)


def sampled_task_scores(
    model: Transformer,
    tokenizer: Tokenizer,
    inputs: StageInputs,
    reference: Callable[[Rollout], Tensor],
    num_samples: int,
    max_new_tokens: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """({task: gold score of sampled replies}, {task: their KL to `reference`}), see `gold_eval`."""
    gold: dict[str, float] = {}
    kl: dict[str, float] = {}
    for name, task in inputs.tasks.items():
        prompts = [ex.prompt for ex in task.examples("val", inputs.num_eval)]
        result = gold_eval(model, tokenizer, task, prompts, reference, num_samples, max_new_tokens)
        gold[name], kl[name] = result["score"], result["kl"]
    return gold, kl


def log_task_scores(stage: L.LightningModule, scores: Mapping[str, float], name: str) -> None:
    """Log `<name>/<task>` for each task and their mean as `<name>` (on the progress bar)."""
    stage.log_dict({f"{name}/{task}": value for task, value in scores.items()}, sync_dist=True)
    stage.log(name, sum(scores.values()) / len(scores), prog_bar=True, sync_dist=True)


def log_greedy_task_scores(stage: Stage, enabled: bool) -> None:
    """At a validation epoch's end (not the sanity check), log greedy exact-match as `val/score/<task>`
    when `enabled` and the stage's data has tasks (SFT and distillation)."""
    if not (enabled and stage.inputs.tasks) or stage.trainer.sanity_checking:
        return
    assert stage.tokenizer is not None
    log_task_scores(stage, greedy_task_scores(stage.model, stage.tokenizer, stage.inputs), "val/score")
