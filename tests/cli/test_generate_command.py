"""`python -m minigpt.cli.generate`: options, streaming, beam output, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from rich.console import Console

from minigpt.cli.generate import generate_text
from minigpt.model.folder import save_model_folder
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError


@pytest.fixture
def run_folder(tiny_model, tmp_path: Path) -> Path:
    tokenizer = CharTokenizer.train("ROMEO: wherefore art thou\n")
    save_model_folder(tmp_path / "model", tiny_model("gpt", vocab_size=tokenizer.vocab_size), tokenizer)
    return tmp_path


def test_streams_a_sampled_continuation(run_folder: Path, compose_command) -> None:
    console = Console(record=True, width=200)
    cfg = compose_command(
        "generate", f"run={run_folder}", "prompt=ROMEO:", "sampling.max_new_tokens=7", "sampling.top_p=0.9", "seed=3"
    )
    out = generate_text(cfg, console=console)
    text = console.export_text()
    tokenizer = CharTokenizer.train("ROMEO: wherefore art thou\n")
    assert text.startswith("ROMEO:" + tokenizer.decode(out.token_lists()[0], skip_special=True))
    assert out.lengths[0] <= 7 and "tokens/s" in text


def test_beam_prints_each_returned_sequence(run_folder: Path, compose_command) -> None:
    console = Console(record=True, width=200)
    cfg = compose_command(
        "generate", f"run={run_folder}", "prompt=wherefore", "sampling.strategy=beam", "num_return_sequences=2",
        "sampling.max_new_tokens=5",
    )  # fmt: skip
    out = generate_text(cfg, console=console)
    text = console.export_text()
    assert "sequence 0" in text and "sequence 1" in text and "score" in text
    assert out.scores is not None and out.tokens.shape[0] == 2


def test_an_unknown_option_fails_with_its_name(run_folder: Path, compose_command) -> None:
    with pytest.raises(ConfigCompositionException, match="temprature"):
        compose_command("generate", f"run={run_folder}", "sampling.temprature=0.5")


def test_a_bad_strategy_fails_with_its_name(run_folder: Path, compose_command) -> None:
    with pytest.raises(ConfigError, match="strategy"):
        generate_text(compose_command("generate", f"run={run_folder}", "sampling.strategy=nucleus"), Console())
