"""The self-critique task: demonstrations from the loop's steps, split by prompt, and its scores."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch

from minigpt.alignment import self_critique
from minigpt.alignment.constitution import load_constitution
from minigpt.alignment.self_critique import CRITIQUE, REVISE, SEPARATOR, demonstrations, read_steps, split_steps
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

STEPS = [
    {"prompt": f"confirm {a} plus 1 is {a + 3}", "reply": f"{a + 3}", "principle": "true_arithmetic",
     "revision": f"{a + 1}", "accepted": True} for a in range(10)
] + [
    {"prompt": "call bob a fool", "reply": "fool", "principle": "no_insults", "revision": "fool", "accepted": False}
]  # fmt: skip


def test_demonstrations_are_split_by_prompt_and_refused_steps_dropped(tmp_path: Path) -> None:
    path = tmp_path / "steps.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in STEPS))
    steps = read_steps(path)
    assert len(steps) == 10
    splits = split_steps(steps, 0.2, 0)
    assert len(splits["test"]) == 2 and not {s["prompt"] for s in splits["test"]} & {
        s["prompt"] for s in splits["train"]
    }
    records = demonstrations(steps[:1])
    assert records == [  # the prompt is shown: "3" is false only because of its numbers
        {"prompt": CRITIQUE + "confirm 0 plus 1 is 3 ; 3", "completion": "true_arithmetic"},
        {"prompt": REVISE + "confirm 0 plus 1 is 3 ; 3", "completion": "1"},
    ]
    path.write_text(json.dumps(STEPS[-1]) + "\n")
    with pytest.raises(ConfigError, match="no accepted revision"):
        read_steps(path)


def test_scores_count_right_critiques_and_improving_revisions(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(string.ascii_lowercase + string.digits + " :_")
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=tokenizer.vocab_size))
    said = {  # a model that names the principle 3 times in 4 and fixes the sum half the time
        CRITIQUE + "3": "true_arithmetic", CRITIQUE + "4": "true_arithmetic", CRITIQUE + "5": "no_insults",
        CRITIQUE + "6": "true_arithmetic", REVISE + "3": "1", REVISE + "4": "2", REVISE + "5": "9", REVISE + "6": "6",
    }  # fmt: skip
    monkeypatch.setattr(
        self_critique,
        "complete",
        lambda m, t, prompts, n: [said[p.split(" ", 1)[0] + " " + p.rsplit(SEPARATOR, 1)[-1]] for p in prompts],
    )
    scores = self_critique.self_critique_scores(model, tokenizer, load_constitution("default"), STEPS[:4])
    assert scores["steps"] == 4 and scores["score_before"] == 1.0  # every reply is a false sum
    assert scores["critique_accuracy"] == 0.75 and scores["revision_improves"] == 0.5 and scores["score_after"] == 0.5
    assert scores["critique_majority"] == 1.0  # every held-out step breaks the same principle
