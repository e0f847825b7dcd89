"""`python -m minigpt.cli.chat`: the command loads the model and answers lines read from stdin until /quit."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from minigpt.cli.chat import main
from minigpt.model.folder import save_model_folder
from minigpt.tokenizer.char import CharTokenizer


def test_answers_a_line_then_quits(tiny_model, tmp_path: Path, compose_command, monkeypatch, capsys) -> None:
    tokenizer = CharTokenizer.train("hello there\n")
    save_model_folder(tmp_path / "model", tiny_model("gpt", vocab_size=tokenizer.vocab_size), tokenizer)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/quit\nnever read\n"))
    main(compose_command("chat", f"run={tmp_path}", "sampling.max_new_tokens=3", "sampling.strategy=greedy"))
    out = capsys.readouterr().out
    assert "plain continuation" in out  # a pretrained tokenizer has no chat tokens
    assert out.count("bot>") == 1  # one answer: /quit ended the session before the third line
