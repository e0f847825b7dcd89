"""HumanEval pass@k of a model: sample n completions per problem, judge them in the sandbox, estimate pass@k.

    python evaluate.py run=<run> eval=humaneval humaneval.n=20 'humaneval.k=[1,10]'

HumanEval prompts are code (a signature and a docstring), so a base model continues them as text, no
chat template. A completion ends where the function does: at the first line that starts a new top-level
statement (Chen et al. 2021 stop at "\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"). pass@k is the
unbiased estimator (`minigpt.code.pass_at_k`) over the n samples of each problem, so n ≥ max(k).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from minigpt.code.execution import Limits, Sandbox
from minigpt.code.judge import judge
from minigpt.code.pass_at_k import mean_pass_at_k
from minigpt.code.problems import CodeProblem, load_humaneval
from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError

STOP_STRINGS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def truncate_at_stop(text: str, stops: Sequence[str] = STOP_STRINGS) -> str:
    """`text` up to the first stop string (the function's body ends there)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def sample_completions(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> list[list[str]]:
    """`n` completions of each prompt (greedy when temperature is 0, which needs n = 1)."""
    greedy = temperature == 0
    if greedy and n != 1:
        raise ConfigError(
            f"humaneval.temperature=0 is greedy decoding, which gives one completion; set humaneval.n=1 (not {n})."
        )
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        strategy="greedy" if greedy else "sample",
        temperature=temperature if not greedy else 1.0,
        num_return_sequences=n,
        stop_strings=list(STOP_STRINGS),
    )
    generator = torch.Generator().manual_seed(seed)
    completions = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt) or [tokenizer.eos_id or 0]
        rows = generate(model, [ids], config, tokenizer=tokenizer, generator=generator).token_lists()
        completions.append([truncate_at_stop(tokenizer.decode(row, skip_special=True)) for row in rows])
    return completions


def evaluate_humaneval(
    model: Transformer,
    tokenizer: Tokenizer,
    n: int = 20,
    k: Sequence[int] = (1, 10),
    temperature: float = 0.8,
    max_new_tokens: int = 256,
    limit: int | None = None,
    seed: int = 0,
    workers: int = 2,
    problems: Sequence[CodeProblem] | None = None,
) -> dict[str, Any]:
    """pass@k for each k on HumanEval (or its first `limit` problems), with the count of each status."""
    if any(not 1 <= kk <= n for kk in k):
        raise ConfigError(f"humaneval.k={list(k)} needs every k between 1 and humaneval.n={n}; raise humaneval.n.")
    problems = list(problems if problems is not None else load_humaneval())[:limit]
    completions = sample_completions(
        model, tokenizer, [p.prompt for p in problems], n, max_new_tokens, temperature, seed
    )
    flat_problems = [p for p in problems for _ in range(n)]
    verdicts = judge(Sandbox(Limits(timeout=5.0)), flat_problems, [c for row in completions for c in row], workers)
    counts = [(n, sum(v.all_passed for v in verdicts[i * n : (i + 1) * n])) for i in range(len(problems))]
    return {
        "problems": len(problems),
        "n": n,
        **{f"pass@{kk}": mean_pass_at_k(counts, kk) for kk in k},
        "statuses": dict(Counter(v.result.status for v in verdicts)),
        "example": {"task_id": problems[0].task_id, "completion": completions[0][0]} if problems else {},
    }
