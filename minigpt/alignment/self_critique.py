"""The critique → revision loop as a generation task: the model learns to critique and revise its own replies.

    python -m minigpt.alignment.self_critique steps=<cai_sl run>/cai_sl/steps.jsonl out=critique/
    python train.py stage=sft init_from=<cai_sl run>/model data=chat_jsonl data.path=critique/train.jsonl
    python -m minigpt.alignment.self_critique steps=... out=critique/ run=<that run>     # held-out scores

Bai et al. (2022, §3.1) have the model itself write the critique and the revision. A tiny model cannot
follow the paper's instructions in words, so here the judge-driven loop of `stage=cai_sl` writes the
demonstrations, and two short tasks are learned from every accepted step of `steps.jsonl`:

    user: "critique: <prompt> ; <reply>"  →  assistant: "<principle>"   (which principle the reply breaks)
    user: "revise: <prompt> ; <reply>"    →  assistant: "<revision>"    (the accepted revision)

The prompt is part of the input because most verdicts depend on it: "17" is a false claim after "confirm
12 plus 5 is 20" only because of the prompt's numbers, and its revision is their true sum (a task that
showed the reply alone would ask for a sum of numbers it never sees).

Split by prompt (a held-out prompt's steps never train). Once fine-tuned, the model revises itself:
`self_revise` answers "revise: <prompt> ; <reply>" greedily, and the held-out scores are the share of
critiques that name the judge's principle (beside `critique_majority`, the share a constant answer — the
commonest principle of the held-out steps — would get) and the share of self-revisions the constitution
scores lower than the reply.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from minigpt.alignment.constitution import Constitution, load_constitution
from minigpt.evaluation.tasks import complete, with_chat_tokens
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text

CRITIQUE, REVISE = "critique: ", "revise: "
SEPARATOR = " ; "  # between the prompt and the reply (a character even a Shakespeare char tokenizer has)


def shown(step: dict[str, Any]) -> str:
    """What the critique and revise tasks are given: the step's prompt and the reply to it."""
    return step["prompt"] + SEPARATOR + step["reply"]


def read_steps(path: str | Path) -> list[dict[str, Any]]:
    """The accepted steps of a `cai_sl/steps.jsonl` (a refused revision demonstrates nothing)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"steps={file} is not a file; pass the cai_sl/steps.jsonl a stage=cai_sl run wrote.")
    steps = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    accepted = [s for s in steps if s.get("accepted")]
    if not accepted:
        raise ConfigError(f"steps={file} has no accepted revision; run stage=cai_sl with more revise_prompts.")
    return accepted


def split_steps(steps: Sequence[dict[str, Any]], test_fraction: float, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Train and test steps, split by prompt."""
    prompts = sorted({s["prompt"] for s in steps})
    random.Random(seed).shuffle(prompts)
    test = set(prompts[: max(1, round(test_fraction * len(prompts)))])
    return {
        "train": [s for s in steps if s["prompt"] not in test],
        "test": [s for s in steps if s["prompt"] in test],
    }


def demonstrations(steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two chat records of every step (module docstring), as `data=chat_jsonl` reads them."""
    records = []
    for step in steps:
        records.append({"prompt": CRITIQUE + shown(step), "completion": step["principle"]})
        records.append({"prompt": REVISE + shown(step), "completion": step["revision"]})
    return records


def self_revise(
    model: Transformer, tokenizer: Tokenizer, steps: Sequence[dict[str, Any]], max_new_tokens: int = 32
) -> list[str]:
    """The model's own revisions: its greedy answers to "revise: <prompt> ; <reply>" for each step."""
    return complete(*with_chat_tokens(model, tokenizer), [REVISE + shown(s) for s in steps], max_new_tokens)


def self_critique_scores(
    model: Transformer, tokenizer: Tokenizer, constitution: Constitution, steps: Sequence[dict[str, Any]]
) -> dict[str, float]:
    """On `steps`: the share of critiques naming the step's principle, and of self-revisions scored lower."""
    model, tokenizer = with_chat_tokens(model, tokenizer)
    critiques = complete(model, tokenizer, [CRITIQUE + shown(s) for s in steps], 16)
    revisions = self_revise(model, tokenizer, steps)
    before = [constitution.total(s["prompt"], s["reply"]) for s in steps]
    after = [constitution.total(s["prompt"], y) for s, y in zip(steps, revisions)]
    n = len(steps)
    return {
        "steps": n,
        "critique_accuracy": sum(c.strip() == s["principle"] for c, s in zip(critiques, steps)) / n,
        "critique_majority": max(Counter(s["principle"] for s in steps).values()) / n,
        "revision_improves": sum(a < b for a, b in zip(after, before)) / n,
        "score_before": sum(before) / n,
        "score_after": sum(after) / n,
    }


def main(cfg: DictConfig) -> dict[str, Any]:
    """Write the demonstrations (`conf/self_critique.yaml`); with `run=`, score that model on the test steps."""
    started = time.perf_counter()
    splits = split_steps(read_steps(cfg.steps), cfg.test_fraction, cfg.seed)
    out = Path(cfg.out).expanduser()
    for split, steps in splits.items():
        atomic_write_text(out / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in demonstrations(steps)))
        print(f"{split}: {len(steps)} steps → {2 * len(steps)} demonstrations → {out / f'{split}.jsonl'}")
    report: dict[str, Any] = {}
    if cfg.run:
        model, tokenizer = load_model_and_tokenizer(cfg.run)
        report = self_critique_scores(model, tokenizer, load_constitution(cfg.constitution), splits["test"])
        atomic_write_text(out / "scores.json", json.dumps({"run": str(cfg.run), **report}, indent=1))
        print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()))
    print(f"{time.perf_counter() - started:.0f} s")
    return report


if __name__ == "__main__":
    from minigpt.cli.command import command

    command("self_critique")(main)()
