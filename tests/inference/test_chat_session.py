"""The chat session (template and plain modes), the REPL commands and streaming decode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from rich.console import Console

from minigpt.cli.chat import repl
from minigpt.inference.chat import ChatSession
from minigpt.inference.config import GenerationConfig
from minigpt.inference.stream import TextStream
from minigpt.tokenizer.byte import ByteTokenizer
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens, render_chat

GREEDY = GenerationConfig(max_new_tokens=4, strategy="greedy")


def always(tiny_model, tokenizer, token: int) -> torch.nn.Module:
    """A model whose next token is always `token`: constant final hidden state u, head row `token` = u."""
    model = tiny_model("gpt", vocab_size=tokenizer.vocab_size, tie_embeddings=False)
    u = torch.randn(model.config.n_embd)
    with torch.no_grad():
        model.norm_f.weight.zero_()
        model.norm_f.bias.copy_(u)
        model.lm_head.weight.zero_()
        model.lm_head.weight[token] = u
    return model


@pytest.fixture
def chat_tokenizer() -> CharTokenizer:
    tokenizer = CharTokenizer.train("abcdefgh ")
    add_chat_tokens(tokenizer)
    return tokenizer


def test_templated_turns_stop_at_end_of_turn(tiny_model, chat_tokenizer) -> None:
    session = ChatSession(
        always(tiny_model, chat_tokenizer, chat_tokenizer.special_id("<|end|>")), chat_tokenizer, GREEDY
    )
    assert session.templated
    assert session.reply("hi") == ""
    assert session.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]


def test_templated_history_and_system_message(tiny_model, chat_tokenizer) -> None:
    a = chat_tokenizer.encode("a")[0]
    session = ChatSession(always(tiny_model, chat_tokenizer, a), chat_tokenizer, GREEDY, system="be brief")
    pieces: list[str] = []
    assert session.reply("hi", on_text=pieces.append) == "aaaa"
    assert "".join(pieces) == "aaaa"
    expected = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "aaaa"},
        {"role": "user", "content": "bye"},
    ]
    assert session.prompt_ids("bye") == render_chat(chat_tokenizer, expected, add_generation_prompt=True)[0]
    session.set_system(None)
    assert (
        session.messages == []
        and session.prompt_ids("x")
        == render_chat(chat_tokenizer, [{"role": "user", "content": "x"}], add_generation_prompt=True)[0]
    )


def test_plain_continuation_without_chat_tokens(tiny_model) -> None:
    tokenizer = CharTokenizer.train("abcdefgh ")
    session = ChatSession(always(tiny_model, tokenizer, tokenizer.encode("b")[0]), tokenizer, GREEDY, system="ab ")
    assert not session.templated
    assert session.reply("cd") == "bbbb"
    assert session.prompt_ids("e") == tokenizer.encode("ab cdbbbbe")
    session.reset()
    assert session.prompt_ids("e") == tokenizer.encode("ab e")


def test_repl_commands(tiny_model, chat_tokenizer) -> None:
    session = ChatSession(always(tiny_model, chat_tokenizer, chat_tokenizer.encode("a")[0]), chat_tokenizer, GREEDY)
    lines: Iterator[str] = iter(["hi", "/system be brief", "hello", "/reset", "/bogus", "/quit", "never read"])
    console = Console(record=True, width=100)
    repl(session, lambda prompt: next(lines), console)
    text = console.export_text()
    assert "bot> aaaa" in text and "system message set" in text and "unknown command /bogus" in text
    assert session.system == "be brief" and session.messages == []
    assert next(lines) == "never read"


def test_stream_holds_back_incomplete_characters() -> None:
    tokenizer = ByteTokenizer()
    stream = TextStream(tokenizer)
    first, second = "é".encode()
    assert stream.push([ord("a")]) == "a"
    assert stream.push([first]) == ""
    assert stream.push([second]) == "é"
    assert stream.push([tokenizer.eos_id]) == ""  # special tokens are skipped
    assert stream.flush() == ""
