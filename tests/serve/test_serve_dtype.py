"""`dtype=bfloat16`: the server holds the model in 16 bits and answers what the same 16-bit model says
locally; an unknown dtype is one sentence."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch
from serve_fixtures import chat_model_folder, running_server

from minigpt.inference.chat import ChatSession
from minigpt.inference.config import GenerationConfig
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.serve import __main__ as serve_command


def test_bfloat16_server_answers_as_the_bfloat16_model(tmp_path: Path) -> None:
    folder = chat_model_folder(tmp_path / "model")
    model, tokenizer = load_model_and_tokenizer(folder)
    config = GenerationConfig(max_new_tokens=30, strategy="greedy")
    expected = ChatSession(model.to(torch.bfloat16), tokenizer, config).reply("2+3=")
    assert len(expected) > 5  # a random model that says something: a token out of place would show
    with running_server(folder, dtype="bfloat16", max_batch=4) as url:
        body = {"messages": [{"role": "user", "content": "2+3="}], "temperature": 0, "max_tokens": 30}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).json()
    assert reply["choices"][0]["message"]["content"] == expected


def test_command_casts_the_model_and_refuses_an_unknown_dtype(
    tmp_path: Path, compose_command, monkeypatch, capsys
) -> None:
    folder = chat_model_folder(tmp_path / "model")
    started: dict = {}
    monkeypatch.setattr(serve_command.uvicorn, "run", lambda app, **options: started.update(app=app))
    serve_command.main(compose_command("serve", f"run={folder}", "dtype=bfloat16"))
    assert started["app"].state.engine.model.lm_head.weight.dtype == torch.bfloat16
    with pytest.raises(SystemExit) as exit_:
        serve_command.main(compose_command("serve", f"run={folder}", "dtype=int8"))
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: dtype=int8 is not one the server holds weights in")
