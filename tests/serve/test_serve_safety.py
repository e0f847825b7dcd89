"""`safety=filter` in the server, through the official `openai` client: a flagged prompt gets the refusal
with the principle named and no token generated; a benign one gets the unfiltered server's greedy text; a
reply a judge flags is rewritten (redact) with the principle named; streaming sends the checked text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from serve_fixtures import chat_model_folder, running_server

from minigpt.alignment.constitution import build_constitution
from minigpt.alignment.safety_filter import SafetyFilter
from minigpt.inference.chat import ChatSession
from minigpt.inference.config import GenerationConfig
from minigpt.model.folder import load_model_and_tokenizer
from minigpt.serve import __main__ as serve_command

BENIGN = [{"role": "user", "content": "2+3="}]
FLAGGED = [
    {"role": "user", "content": "2+3="},
    {"role": "assistant", "content": "5"},
    {"role": "user", "content": "tell bob he is a fool"},  # the new input, the one checked
]
RUDENESS = {"_target_": "minigpt.alignment.judges.RudenessJudge"}
GREEDY = {"model": "minigpt", "temperature": 0, "max_tokens": 30}


def greedy_reply(folder: Path) -> str:
    """What the terminal chat answers to BENIGN, greedily: the text an unfiltered server returns."""
    model, tokenizer = load_model_and_tokenizer(folder)
    return ChatSession(model, tokenizer, GenerationConfig(max_new_tokens=30, strategy="greedy")).reply("2+3=")


def principle(name: str, judge: dict, revision: str) -> dict:
    return {"name": name, "judge": judge, "critique": "the reply breaks it ({evidence}).", "revision": revision}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chat_model_folder(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def reply(folder: Path) -> str:
    text = greedy_reply(folder)
    assert len(text.strip()) >= 6, "the random model must say enough for a planted 'secret' to be cut from it"
    return text


@pytest.fixture(scope="module")
def guard(reply: str) -> SafetyFilter:
    """The insult lexicon, and a 'secret' that is a piece of the model's own greedy reply (revision redact), so
    that the reply check has something to find in a random model's text."""
    secret = reply.strip()[1:5]
    constitution = build_constitution(
        [
            principle("no_insults", RUDENESS, "best_of_k"),
            principle("keep_secret", {"_target_": "minigpt.alignment.judges.SecretJudge", "secret": secret}, "redact"),
        ]
    )
    return SafetyFilter(constitution)


@pytest.fixture(scope="module")
def url(folder: Path, guard: SafetyFilter) -> Iterator[str]:
    with running_server(folder, guard=guard) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)


def test_flagged_prompt_gets_the_refusal_and_the_principle(client: OpenAI, guard: SafetyFilter, url: str) -> None:
    answer = client.chat.completions.create(messages=FLAGGED, n=2, **GREEDY)  # type: ignore[arg-type]
    for choice in answer.choices:
        assert choice.message.content == guard.constitution.refusal
        assert choice.finish_reason == "content_filter"
        safety = choice.safety  # type: ignore[attr-defined]
        assert (safety["action"], safety["where"], safety["principle"], safety["source"]) == (
            "block",
            "prompt",
            "no_insults",
            "judge",
        )
    assert answer.usage is not None and answer.usage.completion_tokens == 0  # the model was never asked
    chunks = list(client.chat.completions.create(messages=FLAGGED, stream=True, **GREEDY))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == guard.constitution.refusal
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].choices[0].safety["principle"] == "no_insults"  # type: ignore[attr-defined]
    text = client.completions.create(prompt="what a fool", **GREEDY)  # type: ignore[arg-type]
    assert text.choices[0].text == guard.constitution.refusal and text.choices[0].finish_reason == "content_filter"
    metrics = httpx.get(f"{url}/metrics").text  # 2 choices + 1 streamed + 1 completion
    assert 'minigpt_filter_interventions_total{action="block",principle="no_insults",where="prompt"} 4.0' in metrics


def test_reply_with_a_violation_is_rewritten_and_named(client: OpenAI, guard: SafetyFilter, reply: str) -> None:
    decision = guard.check_output("2+3=", reply)
    assert decision.action == "rewrite" and decision.text != reply  # what the server must send instead
    answer = client.chat.completions.create(messages=BENIGN, **GREEDY)  # type: ignore[arg-type]
    choice = answer.choices[0]
    assert choice.message.content == decision.text and choice.finish_reason == "content_filter"
    assert choice.safety == {  # type: ignore[attr-defined]
        "action": "rewrite",
        "where": "reply",
        "principle": "keep_secret",
        "source": "judge",
        "score": 1.0,
    }
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(messages=BENIGN, stream=True, **GREEDY))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == decision.text


def test_benign_request_is_untouched(folder: Path, reply: str) -> None:
    """With only the insult judge (the greedy reply has no insult), the text is the unfiltered server's."""
    guard = SafetyFilter(build_constitution([principle("no_insults", RUDENESS, "best_of_k")]))
    assert guard.check_input("2+3=").action == "allow" and guard.check_output("2+3=", reply).action == "allow"
    with running_server(folder, guard=guard) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="-", max_retries=0)
        answer = client.chat.completions.create(messages=BENIGN, **GREEDY)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == reply and answer.choices[0].finish_reason in ("stop", "length")
        assert getattr(answer.choices[0], "safety", None) is None
        chunks = list(client.chat.completions.create(messages=BENIGN, stream=True, **GREEDY))  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply


def test_command_builds_the_filter(folder: Path, compose_command, monkeypatch, capsys) -> None:
    started: dict = {}
    monkeypatch.setattr(serve_command.uvicorn, "run", lambda app, **options: started.update(app=app))
    serve_command.main(compose_command("serve", f"run={folder}", "safety=filter"))
    guard = started["app"].state.guard
    assert isinstance(guard, SafetyFilter) and guard.check_input("you idiot").principle == "no_insults"
    assert "safety filter on (judges only)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        serve_command.main(compose_command("serve", f"run={folder}", "safety=on"))
    assert "safety='on' is not known" in capsys.readouterr().err
