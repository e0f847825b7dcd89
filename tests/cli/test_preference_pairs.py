"""`python -m minigpt.cli.preference_pairs`: pairs written as JSONL that the preference data module reads."""

from __future__ import annotations

import string
from pathlib import Path

from minigpt.cli.preference_pairs import main
from minigpt.data.preferences import read_preferences
from minigpt.model.folder import save_model_folder
from minigpt.tokenizer.char import CharTokenizer


def test_writes_pairs_that_the_preference_data_reads(tiny_model, tmp_path: Path, compose_command) -> None:
    tokenizer = CharTokenizer.train(string.printable)
    save_model_folder(tmp_path / "model", tiny_model("gpt", vocab_size=tokenizer.vocab_size), tokenizer)
    out = tmp_path / "prefs.jsonl"
    cfg = compose_command(
        "preference_pairs", f"run={tmp_path / 'model'}", "task=arithmetic", "task.max_digits=1", "n=6", "k=2",
        "with_answer=true", "max_new_tokens=4", f"out={out}",
    )  # fmt: skip
    pairs = main(cfg)
    # A random model never answers right, so the gold answer beats its own reply in every pair.
    assert len(pairs) == 6 and all(pair["task"] == "arithmetic" and pair["margin"] > 0 for pair in pairs)
    read = [pair for _, pair in read_preferences(str(out))]
    assert [(r.prompt[0]["content"], r.chosen, r.rejected, r.margin) for r in read] == [
        (pair["prompt"], pair["chosen"], pair["rejected"], pair["margin"]) for pair in pairs
    ]
