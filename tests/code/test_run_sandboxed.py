"""`python -m minigpt.code.run_sandboxed`: one file through the engine, bad options as one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from minigpt.code.run_sandboxed import main, run_file
from minigpt.utils.errors import ConfigError


def test_runs_a_file_and_prints_its_result(tmp_path: Path, compose_command, capsys) -> None:
    script = tmp_path / "hello.py"
    script.write_text("print('hello from the sandbox')\nraise ValueError('bad value')")
    result = main(compose_command("run_sandboxed", f"file={script}", "timeout=2", "memory=128MB"))
    out = capsys.readouterr().out
    assert result.status == "failed" and "status: failed" in out
    assert "ValueError: bad value" in out and "hello from the sandbox" in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("memory=lots", "memory=lots is not a size"),
        ("timeout=0", "timeout=0 must be"),
        ("isolation=vm", "isolation=vm"),
    ],
)
def test_bad_options_are_one_sentence(tmp_path: Path, compose_command, override: str, message: str) -> None:
    script = tmp_path / "ok.py"
    script.write_text("pass")
    cfg = compose_command("run_sandboxed", f"file={script}", override)

    with pytest.raises(ConfigError, match=message):
        run_file(cfg)


def test_a_missing_file_names_the_field(tmp_path: Path, compose_command) -> None:
    with pytest.raises(ConfigError, match="file=.*is not a file"):
        run_file(compose_command("run_sandboxed", f"file={tmp_path / 'nope.py'}"))
