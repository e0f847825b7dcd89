"""Make preference pairs from a model's own samples, labelled by a task's gold scorer.

    python -m minigpt.cli.preference_pairs run=outputs/<sft run> task=arithmetic n=4000 out=prefs.jsonl

For each of `n` training prompts of the task, `k` replies are sampled (temperature `temperature`) and
scored; the best and the worst form a pair when their scores differ (ties teach no preference and are
dropped), and the score difference is kept as the pair's `margin`. This is the on-policy recipe of
RLHF's preference data (Ouyang et al. 2022 §3.4 rank K samples per prompt), with the gold scorer as the
labeller. `with_answer=true` adds the task's reference answer to the candidates: a weak model that
rarely answers right still yields pairs (a gold answer against its own mistake).

The command's options are the keys of `conf/preference_pairs.yaml`; the task is a config group
(`task=reversal task.max_len=6`).
"""

from __future__ import annotations

from typing import Any

import torch

from minigpt.evaluation.tasks import with_chat_tokens
from minigpt.inference.config import GenerationConfig
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.rl.rollout import sample_rollouts
from minigpt.tasks.base import Task
from minigpt.utils.errors import ConfigError


def best_worst_pair(prompt: str, candidates: list[str], task: Task) -> dict[str, Any] | None:
    """{"prompt", "chosen", "rejected", "margin"} from the best and worst scored candidates; None on a tie."""
    scored = sorted({c: task.score(prompt, c) for c in candidates}.items(), key=lambda kv: kv[1])
    (worst, low), (best, high) = scored[0], scored[-1]
    if high <= low:
        return None
    return {"prompt": prompt, "chosen": best, "rejected": worst, "margin": high - low, "task": task.name}


def make_pairs(
    run: str,
    task: Task,
    n: int,
    k: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    with_answer: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Pairs for the first `n` training prompts of `task`, from `k` samples each of the model in `run`."""
    if n < 1 or k < 1 or (k < 2 and not with_answer):
        raise ConfigError(f"n={n}, k={k}: need n ≥ 1 and k ≥ 2 samples per prompt (or with_answer=true).")
    model, tokenizer = load_model_and_tokenizer(run)
    model, tokenizer = with_chat_tokens(model, tokenizer)
    examples = task.examples("train", n)
    generator = torch.Generator().manual_seed(seed)
    prompts = [ex.prompt for ex in examples]
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature)
    # Rows are prompt-major: the k samples of prompt i are replies[i·k : (i+1)·k].
    rollouts = sample_rollouts(model, tokenizer, prompts, config, k, generator)
    replies = [reply for rollout in rollouts for reply in rollout.completions]
    pairs = []
    for i, ex in enumerate(examples):
        candidates = replies[i * k : (i + 1) * k] + ([ex.answer] if with_answer else [])
        pair = best_worst_pair(ex.prompt, candidates, task)
        if pair is not None:
            pairs.append(pair)
    return pairs
