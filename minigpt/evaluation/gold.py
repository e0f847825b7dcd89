"""Sampled replies scored by a task's gold scorer, and their KL to a reference model.

Greedy exact-match (`minigpt.evaluation.tasks`) measures a policy's mode; preference training changes
its whole distribution, so DPO is judged on *samples* at temperature 1: the mean gold score of sampled
replies, and KL(π ‖ π_ref) estimated on the same samples as the mean of Σₜ [log π(yₜ) − log π_ref(yₜ)]
over each reply's tokens (an unbiased Monte-Carlo estimate because y ~ π; Ziegler et al. 2019 §2.2 use
the same per-sample estimate for their KL penalty). Sampling and scoring go through the one rollout
path, `minigpt.rl.rollout`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from minigpt.inference.config import GenerationConfig
from minigpt.model.transformer import Transformer
from minigpt.rl.rollout import Rollout, sample_rollouts
from minigpt.tasks.base import Task
from minigpt.tokenizer.base import Tokenizer


def gold_eval(
    model: Transformer,
    tokenizer: Tokenizer,
    task: Task,
    prompts: Sequence[str],
    reference: Callable[[Rollout], Tensor] | None = None,
    num_samples: int = 4,
    max_new_tokens: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """Mean gold score of sampled replies (`score`) and, given `reference`, their mean KL to it (`kl`).

    `reference(rollout)` returns the reference's per-token log-probs of the replies (B, L), e.g.
    `partial(frozen_logprobs, ref_model)`; a function rather than a model so that a LoRA policy can
    sample with its adapters on and be scored as the reference with them off.
    """
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=1.0)
    scores: list[float] = []
    kls: list[Tensor] = []
    for rollout in sample_rollouts(model, tokenizer, prompts, config, num_samples, generator):
        scores += [task.score(p, c) for p, c in zip(rollout.prompts, rollout.completions)]
        if reference is not None:
            assert rollout.sampled_logprobs is not None
            ratio = (rollout.sampled_logprobs - reference(rollout).float()) * rollout.mask
            kls.append(ratio.sum(dim=1).cpu())
    result = {"score": sum(scores) / len(scores)}
    if reference is not None:
        result["kl"] = float(torch.cat(kls).mean())
    return result
