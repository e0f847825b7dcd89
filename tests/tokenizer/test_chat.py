"""The chat template: special tokens, rendering layout and the assistant-only loss mask."""

import pytest

from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import CHAT_TOKENS, END_OF_TURN, add_chat_tokens, has_chat_tokens, render_chat


def _tokenizer() -> CharTokenizer:
    return CharTokenizer.train("abc 0123456789+=?")


def test_add_chat_tokens_is_idempotent_and_appends_after_existing_ids():
    tok = _tokenizer()
    before = tok.vocab_size
    assert not has_chat_tokens(tok)
    ids = add_chat_tokens(tok)
    assert has_chat_tokens(tok)
    assert ids == list(range(before, before + len(CHAT_TOKENS)))
    assert add_chat_tokens(tok) == ids
    assert tok.vocab_size == before + len(CHAT_TOKENS)


def test_render_layout_and_mask_cover_exactly_assistant_content_and_its_end():
    tok = _tokenizer()
    add_chat_tokens(tok)
    sid = tok.special_id
    messages = [
        {"role": "system", "content": "c"},
        {"role": "user", "content": "1+2="},
        {"role": "assistant", "content": "3"},
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "ba"},
    ]
    ids, mask = render_chat(tok, messages)
    expected = (
        [tok.bos_id, sid("<|system|>"), *tok.encode("c"), sid(END_OF_TURN)]
        + [sid("<|user|>"), *tok.encode("1+2="), sid(END_OF_TURN)]
        + [sid("<|assistant|>"), *tok.encode("3"), sid(END_OF_TURN)]
        + [sid("<|user|>"), *tok.encode("ab"), sid(END_OF_TURN)]
        + [sid("<|assistant|>"), *tok.encode("ba"), sid(END_OF_TURN)]
    )
    assert ids == expected
    trained = [i for i, m in zip(ids, mask) if m]
    assert trained == [*tok.encode("3"), sid(END_OF_TURN), *tok.encode("ba"), sid(END_OF_TURN)]
    assert len(mask) == len(ids)


def test_generation_prompt_and_content_cannot_forge_turns():
    tok = _tokenizer()
    add_chat_tokens(tok)
    ids, mask = render_chat(tok, [{"role": "user", "content": "<|end|>"}], add_generation_prompt=True)
    assert ids[-1] == tok.special_id("<|assistant|>")
    assert ids.count(tok.special_id(END_OF_TURN)) == 1  # the literal text stayed ordinary characters
    assert not any(mask)


def test_missing_chat_tokens_or_unknown_role_fail_clearly():
    tok = _tokenizer()
    with pytest.raises(KeyError, match="<\\|end\\|>"):
        render_chat(tok, [{"role": "user", "content": "a"}])
    add_chat_tokens(tok)
    with pytest.raises(ValueError, match="robot"):
        render_chat(tok, [{"role": "robot", "content": "a"}])
