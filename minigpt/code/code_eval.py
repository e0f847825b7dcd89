"""`evaluate.py eval=code`: pass@1 / pass@k per code task on held-out prompts, judged in the sandbox.

    python evaluate.py run=<run> eval=code                                   # greedy, pass@1
    python evaluate.py run=<run> eval=code code.n=10 'code.k=[1,5]' code.temperature=0.8
    python evaluate.py run=<run> eval=code code.mbpp=my_problems.jsonl       # an MBPP-format file too
    python evaluate.py run=<run> eval=code code.isolation=process code.start=fork   # the fork server: faster

Each task's test-split prompts (up to `code.limit`) are answered in the chat format the code tasks are
fine-tuned in, `n` replies per prompt. An executed task's replies are judged together in the sandbox
(`minigpt.code.judge`, `workers` programs at a time); a reply *passes* when every test of its problem
passes, and pass@k is the unbiased estimator over the n replies (Chen et al. 2021, eq. 1). A task without a
program to run (`code_to_docstring`) passes when its gold score is 1. Each row also reports the mean
score (the share of tests passed, or the task's own score) and how the programs ended.

An MBPP-format file (`text`, `code`, `test_list`, Austin et al. 2021) is one more row: the prompt is the
problem's text and its first test ("Your code should pass: assert …", as MBPP's prompts show tests), the
reply the whole function, judged on every test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from minigpt.code.all_tasks import CODE_TASKS
from minigpt.code.execution import Limits, Sandbox
from minigpt.code.judge import judge
from minigpt.code.pass_at_k import mean_pass_at_k
from minigpt.code.problems import CodeProblem, load_mbpp_jsonl
from minigpt.code.tasks import ExecutedTask
from minigpt.evaluation.tasks import with_chat_tokens
from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.transformer import Transformer
from minigpt.tasks.base import Task, get_task
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN, render_chat
from minigpt.utils.errors import ConfigError


@dataclass
class CodeSuite:
    """Prompts to answer and how to judge them: problems run in the sandbox, else a scoring function."""

    name: str
    prompts: list[str]
    problems: list[CodeProblem] | None = None
    score: Callable[[str, str], float] | None = None


def task_suite(name: str, task: Task, limit: int) -> CodeSuite:
    """A task's first `limit` test-split prompts."""
    prompts = [ex.prompt for ex in task.examples("test", limit)]
    if isinstance(task, ExecutedTask):
        return CodeSuite(name, prompts, problems=[task.code_problem(p) for p in prompts])
    return CodeSuite(name, prompts, score=task.score)


def mbpp_suite(path: str, limit: int) -> CodeSuite:
    """The first `limit` problems of an MBPP-format JSONL file."""
    problems = load_mbpp_jsonl(path)[:limit]
    prompts = [f"{p.prompt}\nYour code should pass: {p.tests[0]}" if p.tests else p.prompt for p in problems]
    return CodeSuite("mbpp", prompts, problems=problems)


@torch.no_grad()
def sample_replies(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    n: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int = 16,
) -> list[list[str]]:
    """`n` chat replies to each prompt (greedy when temperature is 0, which needs n = 1)."""
    if temperature == 0 and n != 1:
        raise ConfigError(f"code.temperature=0 is greedy decoding, which gives one reply; set code.n=1 (not {n}).")
    model, tokenizer = with_chat_tokens(model, tokenizer)
    end = tokenizer.special_id(END_OF_TURN)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        strategy="greedy" if temperature == 0 else "sample",
        temperature=temperature or 1.0,
        num_return_sequences=n,
        stop_tokens=[end] + ([tokenizer.eos_id] if tokenizer.eos_id is not None else []),
    )
    generator = torch.Generator().manual_seed(seed)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    replies: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        ids = [
            render_chat(tokenizer, [{"role": "user", "content": p}], True)[0]
            for p in prompts[start : start + batch_size]
        ]
        rows = generate(model, ids, config, pad_id=pad_id, generator=generator).token_lists()
        texts = [tokenizer.decode(row[: row.index(end)] if end in row else row, skip_special=True) for row in rows]
        replies += [texts[i * n : (i + 1) * n] for i in range(len(ids))]  # prompt-major: n rows per prompt
    return replies


def judge_suite(
    suite: CodeSuite, replies: list[list[str]], k: Sequence[int], sandbox: Sandbox, workers: int
) -> dict[str, Any]:
    """pass@k, the mean score and the statuses of one suite's replies."""
    n = len(replies[0]) if replies else 0
    flat = [reply for row in replies for reply in row]
    if suite.problems is not None:
        verdicts = judge(sandbox, [p for p in suite.problems for _ in range(n)], flat, workers)
        passed = [v.all_passed for v in verdicts]
        scores = [v.fraction for v in verdicts]
        statuses = dict(Counter(v.result.status for v in verdicts))
    else:
        assert suite.score is not None
        scores = [suite.score(p, reply) for p, row in zip(suite.prompts, replies, strict=True) for reply in row]
        passed = [s >= 1.0 for s in scores]
        statuses = {"scored (not executed)": len(scores)}
    counts = [(n, sum(passed[i * n : (i + 1) * n])) for i in range(len(suite.prompts))]
    return {
        "prompts": len(suite.prompts),
        "n": n,
        **{f"pass@{kk}": mean_pass_at_k(counts, kk) for kk in k},
        "score": sum(scores) / max(len(scores), 1),
        "statuses": statuses,
        "example": {"prompt": suite.prompts[0], "reply": replies[0][0]} if replies else {},
    }


def code_tasks(cfg: DictConfig, trained: DictConfig | None) -> dict[str, Task]:
    """The code tasks the run was fine-tuned on (same options), else those `code.tasks` names."""
    nodes = trained.data.get("tasks") if trained is not None and "data" in trained else None
    from_run = {name: node for name, node in (nodes or {}).items() if name in CODE_TASKS}
    if from_run:
        return {name: instantiate(node) for name, node in from_run.items()}
    unknown = [name for name in cfg.code.tasks if name not in CODE_TASKS]
    if unknown:
        raise ConfigError(f"code.tasks has {unknown}, not code tasks; use some of {sorted(CODE_TASKS)}.")
    return {name: get_task(name) for name in cfg.code.tasks}


def evaluate_code(
    cfg: DictConfig, trained: DictConfig | None, model: Transformer, tokenizer: Tokenizer
) -> dict[str, dict[str, Any]]:
    """One row per code task (and the MBPP file, if given): see the module docstring."""
    options = cfg.code
    if any(not 1 <= kk <= options.n for kk in options.k):
        raise ConfigError(f"code.k={list(options.k)} needs every k between 1 and code.n={options.n}; raise code.n.")
    suites = [task_suite(name, task, options.limit) for name, task in code_tasks(cfg, trained).items()]
    if options.get("mbpp"):
        suites.append(mbpp_suite(options.mbpp, options.limit))
    sandbox = Sandbox(Limits(timeout=options.timeout), options.isolation, start=options.start)
    results = {}
    for suite in suites:
        replies = sample_replies(
            model, tokenizer, suite.prompts, options.n, options.temperature, options.max_new_tokens, cfg.seed
        )
        results[suite.name] = judge_suite(suite, replies, list(options.k), sandbox, options.workers)
    sandbox.close()
    return results


def show_code(console: Console, results: dict[str, dict[str, Any]]) -> None:
    """The report table: one row per task."""
    k_columns = sorted({key for row in results.values() for key in row if key.startswith("pass@")})
    table = Table(title="code tasks (held-out test split)")
    for column in ["task", "prompts", "n", *k_columns, "mean score", "statuses"]:
        table.add_column(column, justify="left" if column in ("task", "statuses") else "right")
    for name, row in results.items():
        statuses = ", ".join(f"{s} {c}" for s, c in sorted(row["statuses"].items()))
        cells = [f"{row[key]:.3f}" for key in k_columns]
        table.add_row(name, str(row["prompts"]), str(row["n"]), *cells, f"{row['score']:.3f}", statuses)
    console.print(table)
