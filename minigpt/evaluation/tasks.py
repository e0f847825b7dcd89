"""Task accuracy: answer held-out task prompts by greedy decoding and score them with the gold scorer.

`evaluate_tasks(model, tokenizer, ["arithmetic", "reversal"], split="test")` → {task: mean score}; for
exact-match tasks the mean score *is* exact-match accuracy. The SFT stage calls it on the validation
split at every validation; `evaluate.py eval=tasks` on the test split.

A model whose tokenizer has no chat tokens yet (a pretrained base model) is evaluated on copies that
receive them (new embedding rows at the mean, see `Transformer.resize_vocab`): that is the honest
"before SFT" number, and the caller's model and tokenizer are left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.transformer import Transformer
from minigpt.tasks.base import Task, get_task
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN, add_chat_tokens, has_chat_tokens, render_chat

TaskSpec = Sequence[str | Task] | Mapping[str, Task]


def with_chat_tokens(model: Transformer, tokenizer: Tokenizer) -> tuple[Transformer, Tokenizer]:
    """`model` and `tokenizer` themselves if the chat tokens are there, else grown copies."""
    if has_chat_tokens(tokenizer) and model.config.vocab_size >= tokenizer.vocab_size:
        return model, tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    add_chat_tokens(tokenizer)
    model = copy.deepcopy(model)
    model.resize_vocab(tokenizer.vocab_size)
    return model, tokenizer


@torch.no_grad()
def complete(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 64,
) -> list[str]:
    """Greedy assistant replies to single-turn user `prompts` (text up to the first `<|end|>`)."""
    end = tokenizer.special_id(END_OF_TURN)
    stops = [end] + ([tokenizer.eos_id] if tokenizer.eos_id is not None else [])
    config = GenerationConfig(max_new_tokens=max_new_tokens, strategy="greedy", stop_tokens=stops)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    replies: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [render_chat(tokenizer, [{"role": "user", "content": p}], True)[0] for p in chunk]
        for row in generate(model, ids, config, pad_id=pad_id).token_lists():
            row = row[: row.index(end)] if end in row else row
            replies.append(tokenizer.decode(row, skip_special=True))
    return replies


def task_results(
    model: Transformer, tokenizer: Tokenizer, task: Task, split: str = "test", n: int = 100
) -> list[tuple[str, str, float]]:
    """(prompt, completion, gold score) for the first `n` prompts of `task`'s `split`."""
    model, tokenizer = with_chat_tokens(model, tokenizer)
    examples = task.examples(split, n)
    # Room for the longest gold answer plus its <|end|> and a little slack for wrong, longer answers.
    longest = max(len(tokenizer.encode(ex.answer)) for ex in examples)
    replies = complete(model, tokenizer, [ex.prompt for ex in examples], longest + 4)
    return [(ex.prompt, reply, task.score(ex.prompt, reply)) for ex, reply in zip(examples, replies)]


def evaluate_tasks(
    model: Transformer, tokenizer: Tokenizer, tasks: TaskSpec, split: str = "test", n: int = 100
) -> dict[str, float]:
    """Mean gold score per task (exact-match accuracy for exact tasks) on `n` prompts of `split`.

    `tasks`: task names (built with default options), Task objects, or a {name: Task} mapping.
    """
    return evaluate_tasks_solved(model, tokenizer, tasks, split, n)[0]


def evaluate_tasks_solved(
    model: Transformer, tokenizer: Tokenizer, tasks: TaskSpec, split: str = "test", n: int = 100
) -> tuple[dict[str, float], dict[str, float]]:
    """Per task, the mean gold score and the share of prompts solved outright (score 1).

    The two differ for graded scorers: a code task's score is the share of its hidden tests passed, and
    its solved share is greedy pass@1 (every test passes, Chen et al. 2021's criterion).
    """
    named = (
        dict(tasks)
        if isinstance(tasks, Mapping)
        else {(t if isinstance(t, str) else t.name): (get_task(t) if isinstance(t, str) else t) for t in tasks}
    )
    means: dict[str, float] = {}
    solved: dict[str, float] = {}
    for name, task in named.items():
        results = task_results(model, tokenizer, task, split, n)  # fewer than n for a finite task's small split
        scores = [score for *_, score in results]
        means[name] = sum(scores) / max(len(scores), 1)
        solved[name] = sum(score == 1.0 for score in scores) / max(len(scores), 1)
    return means, solved
