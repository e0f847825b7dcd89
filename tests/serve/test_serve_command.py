"""`python -m minigpt.serve`: the command builds the app from conf/serve.yaml; a bad folder is one sentence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from serve_fixtures import chat_model_folder

from minigpt.serve import __main__ as serve_command


def test_command_serves_the_folder_on_loopback(tmp_path: Path, compose_command, monkeypatch) -> None:
    folder = chat_model_folder(tmp_path / "model")
    started: dict = {}
    monkeypatch.setattr(serve_command.uvicorn, "run", lambda app, **options: started.update(app=app, **options))
    serve_command.main(compose_command("serve", f"run={folder}", "port=8123", "max_batch=3"))
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    assert started["app"].state.engine.max_batch == 3


@pytest.mark.slow
def test_missing_model_folder_is_one_sentence(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "minigpt.serve", f"run={tmp_path / 'nothing'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: run=") and "Traceback" not in proc.stderr


def test_impossible_limits_are_one_sentence(tmp_path: Path, compose_command, capsys) -> None:
    folder = chat_model_folder(tmp_path / "model")
    with pytest.raises(SystemExit) as exit_:
        serve_command.main(compose_command("serve", f"run={folder}", "default_max_tokens=2000"))
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: default_max_tokens=2000 is above max_tokens_cap=1024")
