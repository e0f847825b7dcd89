"""`ReplyText`: the text before the first stop string, none of it held back longer than needed."""

from __future__ import annotations

from minigpt.serve.text import ReplyText
from minigpt.tokenizer.char import CharTokenizer


def pieces(text: str, stops: list[str]) -> tuple[list[str], str]:
    """Feed `text` one character token at a time: the pieces handed out while streaming, and the last one."""
    tokenizer = CharTokenizer.train("abcdefgh END")
    reply = ReplyText(tokenizer, stops)
    return [reply.push([token]) for token in tokenizer.encode(text)], reply.finish()


def test_stop_string_and_what_follows_never_appear() -> None:
    streamed, last = pieces("abc ENDdef", ["END"])
    assert "".join(streamed) + last == "abc "
    assert streamed[:4] == ["a", "b", "c", " "]  # text that cannot begin a stop goes out at once


def test_partial_stop_is_held_then_released() -> None:
    streamed, last = pieces("abENab", ["END"])
    assert streamed == ["a", "b", "", "", "ENa", "b"]  # "E", "EN" might begin "END": held until "a" rules it out
    assert last == ""


def test_held_tail_is_released_at_the_end_and_earliest_stop_wins() -> None:
    assert pieces("abcEN", ["END"]) == (["a", "b", "c", "", ""], "EN")
    streamed, last = pieces("hh ab ENDcd", ["cd", "b"])
    assert "".join(streamed) + last == "hh a"
