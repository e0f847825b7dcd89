"""AI-feedback preference pairs (RL-CAI, Bai et al. 2022 §4): two samples per prompt, labelled by the judges.

    python -m minigpt.alignment.ai_feedback run=<cai_sl run> red_team=red/ out=prefs.jsonl
    python train.py stage=dpo init_from=<cai_sl run>/model data=preferences data.path=prefs.jsonl data.tasks=...
    python train.py stage=dpo init_from=<cai_sl run>/model data=preferences data.source=ai_feedback constitution=default

(the last: the pairs are made from `init_from` when the run starts, into `<run>/ai_feedback.jsonl`).

For every training prompt of the red-team folder (red and benign), the model samples two replies; the
soft label P(y_a ≻ y_b) = σ(Δs / T) (`minigpt.alignment.feedback`) orders them into chosen and rejected.
Pairs whose label is within `min_confidence` of 1/2 (ties, or near-ties) teach nothing and are dropped.
Each line is a preference record that `data=preferences` reads for stage=dpo and stage=reward:

    {"prompt": "call bob a fool", "chosen": "bob", "rejected": "bob is a fool", "margin": 1.44,
     "soft_label": 0.997, "task": null}

`margin` is |Δs| (the reward stage can use it); `soft_label` is P(chosen ≻ rejected), kept for a loss
that takes soft labels (DPO here trains on the hard order; `stage.label_smoothing` is its global form).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from minigpt.alignment.constitution import Constitution, load_constitution
from minigpt.alignment.feedback import reply_score, soft_label
from minigpt.alignment.red_team import RedTeamPrompt, make_red_team, planted_secret, read_red_team, write_red_team
from minigpt.evaluation.tasks import with_chat_tokens
from minigpt.inference.config import GenerationConfig
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.rl.rollout import sample_rollouts
from minigpt.tasks.base import get_task
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text


def label_pair(
    constitution: Constitution,
    prompt: RedTeamPrompt,
    a: str,
    b: str,
    temperature: float,
    min_confidence: float,
    truth_weight: float = 0.0,
) -> dict[str, Any] | None:
    """The preference record of two replies, chosen first; None when they are equal or the label is unsure.

    `truth_weight` > 0 adds truth_weight · `feedback.verified_truth` (a true answer to the prompt's one
    expression) to the score of a reply to a red prompt, so that the true sum beats a reply that claims nothing.
    """
    tasks = {prompt.task: get_task(prompt.task)} if prompt.task else {}
    s_a = reply_score(constitution, tasks, prompt.prompt, a, prompt.task, truth_weight)
    s_b = reply_score(constitution, tasks, prompt.prompt, b, prompt.task, truth_weight)
    p = soft_label(s_a, s_b, temperature)
    if a == b or abs(p - 0.5) < min_confidence:
        return None
    chosen, rejected = (a, b) if p > 0.5 else (b, a)
    return {"prompt": prompt.prompt, "chosen": chosen, "rejected": rejected, "margin": abs(s_a - s_b),
            "soft_label": max(p, 1 - p), "task": prompt.task}  # fmt: skip


def make_feedback_pairs(
    run: str,
    red_team: str,
    constitution: Constitution,
    n: int | None = None,
    temperature: float = 1.0,
    label_temperature: float = 0.25,
    min_confidence: float = 0.1,
    max_new_tokens: int = 24,
    seed: int = 0,
    truth_weight: float = 0.0,
) -> list[dict[str, Any]]:
    """Pairs from two samples per training prompt of `red_team` (the first `n`), from the model in `run`
    (`truth_weight`: see `label_pair`)."""
    if label_temperature <= 0 or not 0 <= min_confidence < 0.5:
        raise ConfigError(
            f"label_temperature={label_temperature} must be > 0 and min_confidence={min_confidence} in [0, 0.5)."
        )
    prompts = read_red_team(red_team, "train")[:n]
    model, tokenizer = with_chat_tokens(*load_model_and_tokenizer(run))
    generator = torch.Generator().manual_seed(seed)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature)
    rollouts = sample_rollouts(model, tokenizer, [p.prompt for p in prompts], config, 2, generator)
    replies = [reply for rollout in rollouts for reply in rollout.completions]  # prompt-major: a, b per prompt
    pairs = [
        label_pair(
            constitution, prompt, replies[2 * i], replies[2 * i + 1], label_temperature, min_confidence, truth_weight
        )
        for i, prompt in enumerate(prompts)
    ]
    return [pair for pair in pairs if pair is not None]


def write_feedback_pairs(
    run: str | None,
    constitution: Constitution,
    out: str,
    red_team: str | None = None,
    red_team_n: int = 2000,
    tasks: Sequence[str] = ("arithmetic", "reversal", "sorting"),
    **options: Any,
) -> str:
    """Make the pairs for `data=preferences data.source=ai_feedback` and write them to `out`; its path.

    Without `red_team`, a set of `red_team_n` red prompts (and benign prompts of `tasks`) is generated with
    the constitution's secret and written beside `out` (`red_team/`), so the run keeps what it trained on."""
    if not run:
        raise ConfigError(
            "data.source=ai_feedback samples the pairs from init_from, which is unset; set init_from=<model>."
        )
    if not red_team:
        red_team = str(Path(out).parent / "red_team")
        write_red_team(red_team, make_red_team(red_team_n, planted_secret(constitution), list(tasks)))
    pairs = make_feedback_pairs(run, red_team, constitution, **options)
    if len(pairs) < 2:
        raise ConfigError(
            f"AI feedback gave {len(pairs)} pairs from {run}; raise data.ai_feedback.n or lower min_confidence."
        )
    atomic_write_text(Path(out), "".join(json.dumps(pair) + "\n" for pair in pairs))
    return out


def main(cfg: DictConfig) -> list[dict[str, Any]]:
    """Sample, label and write the pairs (`conf/ai_feedback.yaml`); print a summary."""
    started = time.perf_counter()
    pairs = make_feedback_pairs(
        cfg.run, cfg.red_team, load_constitution(cfg.constitution), cfg.n, cfg.temperature, cfg.label_temperature,
        cfg.min_confidence, cfg.max_new_tokens, cfg.seed, cfg.get("truth_weight", 0.0),
    )  # fmt: skip
    atomic_write_text(Path(cfg.out), "".join(json.dumps(pair) + "\n" for pair in pairs))
    red = sum(pair["task"] is None for pair in pairs)
    print(
        f"{len(pairs)} pairs ({red} on red prompts, {len(pairs) - red} on benign ones) in "
        f"{time.perf_counter() - started:.0f} s → {cfg.out}"
    )
    return pairs


if __name__ == "__main__":
    from minigpt.cli.command import command

    command("ai_feedback")(main)()
