"""`python -m minigpt.cli.train_tokenizer`: a BPE tokenizer learned on a data config's corpus, both files written."""

from __future__ import annotations

import pytest

from minigpt.cli.command import require_values
from minigpt.cli.train_tokenizer import train_tokenizer
from minigpt.tokenizer import load_tokenizer
from minigpt.utils.errors import ConfigError


def test_cli_trains_and_writes_both_files(play_file, tmp_path, compose_command):
    cfg = compose_command(
        "train_tokenizer", "data=text_files", f"data.corpus.paths=[{play_file}]", "tokenizer.vocab_size=300",
        f"paths.cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'tok'}",
    )  # fmt: skip
    tok, path = train_tokenizer(cfg)
    assert path == tmp_path / "tok" / "tokenizer.json" and (tmp_path / "tok" / "tokenizer.tiktoken").exists()
    assert load_tokenizer(path).to_json() == tok.to_json() and tok.vocab_size == 300
    with pytest.raises(ConfigError, match="out is not set"):
        require_values(compose_command("train_tokenizer", "data=text_files", f"data.corpus.paths=[{play_file}]"))
