"""Make preference pairs from a model's own samples, labelled by a task's gold scorer.

    python -m minigpt.data.preferences run=outputs/<sft run> task=arithmetic n=4000 out=prefs.jsonl

For each of `n` training prompts of the task, `k` replies are sampled (temperature `temperature`) and
scored; the best and the worst form a pair when their scores differ (ties teach no preference and are
dropped), and the score difference is kept as the pair's `margin`. This is the on-policy recipe of
RLHF's preference data (Ouyang et al. 2022 §3.4 rank K samples per prompt), with the gold scorer as the
labeller. `with_answer=true` adds the task's reference answer to the candidates: a weak model that
rarely answers right still yields pairs (a gold answer against its own mistake).

Options: run (model or run folder), task, n, out, k=4, temperature=1.0, max_new_tokens=32,
with_answer=false, seed=0, and task options as task.<name>=<value> (e.g. task.max_digits=3).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from minigpt.evaluation.tasks import with_chat_tokens
from minigpt.inference.config import GenerationConfig
from minigpt.model.folder import load_model_folder
from minigpt.rl.rollout import sample_rollouts
from minigpt.tasks.base import Task, get_task
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text


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
    model, tokenizer = load_model_folder(run)
    if tokenizer is None:
        raise ConfigError(f"run={run!r} has no tokenizer.json; pass a model folder a training run wrote.")
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


def parse_args(argv: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """`key=value` arguments → (options, task options given as `task.<name>=<value>`)."""
    options, task_options = {}, {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"argument {arg!r} is not key=value; e.g. run=outputs/<run> task=arithmetic.")
        (task_options if key.startswith("task.") else options)[key.removeprefix("task.")] = value
    missing = [key for key in ("run", "task", "n", "out") if key not in options]
    if missing:
        raise ConfigError(f"missing {missing}; e.g. python -m minigpt.data.preferences run=R task=T n=N out=F")
    return options, task_options


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    options, task_options = parse_args(sys.argv[1:] if argv is None else argv)
    task = get_task(options["task"], **{key: json.loads(value) for key, value in task_options.items()})
    started = time.perf_counter()
    n = int(options["n"])
    pairs = make_pairs(
        options["run"], task, n, k=int(options.get("k", 4)),
        temperature=float(options.get("temperature", 1.0)),
        max_new_tokens=int(options.get("max_new_tokens", 32)),
        with_answer=options.get("with_answer", "false").lower() == "true", seed=int(options.get("seed", 0)),
    )  # fmt: skip
    atomic_write_text(Path(options["out"]), "".join(json.dumps(p) + "\n" for p in pairs))
    mean_margin = sum(p["margin"] for p in pairs) / max(1, len(pairs))
    print(
        f"{len(pairs)} pairs from {n} prompts ({n - len(pairs)} ties dropped), mean margin {mean_margin:.3f}, "
        f"in {time.perf_counter() - started:.0f} s → {options['out']}"
    )
