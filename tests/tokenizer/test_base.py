"""The shared tokenizer behaviour (special tokens, decoding, tokenizer.json) and the char/byte tokenizers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.tokenizer import ByteTokenizer, CharTokenizer, load_tokenizer
from minigpt.utils.errors import ConfigError

ALPHABET = "abcdefgh ,.\n"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_byte_round_trip_on_any_unicode(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=ALPHABET))
def test_char_round_trip_on_its_alphabet(text):
    tok = CharTokenizer.train(ALPHABET)
    assert len(tok.encode(text)) == len(text)
    assert tok.decode(tok.encode(text)) == text


def test_char_unseen_characters_become_id_zero():
    tok = CharTokenizer.train("ba")
    assert tok.chars == ["a", "b"] and tok.encode("bz") == [1, 0]


def test_invalid_utf8_decodes_with_replacement():
    tok = ByteTokenizer()
    # A lone continuation byte and a truncated 3-byte sequence (the first two bytes of "€").
    assert tok.decode([ord("a"), 0x80, ord("b")]) == "a\ufffdb"
    assert tok.decode([0xE2, 0x82]) == "\ufffd"
    assert tok.decode([0xE2, 0x82, tok.eos_id, 0xAC]) == "\ufffd<|eos|>\ufffd"  # specials cut byte runs


def test_special_tokens_atomic_and_only_when_allowed():
    tok = ByteTokenizer()
    text = "hi<|eos|>there<|bos|>"
    plain = tok.encode(text)
    assert tok.eos_id not in plain and tok.bos_id not in plain and len(plain) == len(text)
    special = tok.encode(text, allow_special=True)
    assert special == [*b"hi", tok.eos_id, *b"there", tok.bos_id]
    assert tok.decode(special) == text
    assert tok.decode(special, skip_special=True) == "hithere"


def test_special_ids_follow_the_base_vocabulary_and_adding_is_idempotent():
    tok = ByteTokenizer()
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (256, 257, 258) and tok.vocab_size == 259
    assert tok.add_special_tokens(["<|user|>", "<|eos|>"]) == [259, 257]
    assert tok.add_special_tokens(["<|user|>"]) == [259] and tok.vocab_size == 260
    # The longest special token wins where two overlap.
    tok.add_special_tokens(["<|user|>x"])
    assert tok.encode("<|user|>x", allow_special=True) == [tok.special_id("<|user|>x")]
    with pytest.raises(KeyError, match="no special token"):
        tok.special_id("<|nope|>")
    with pytest.raises(ValueError, match="outside"):
        tok.decode([tok.vocab_size])


@pytest.mark.parametrize("make", [ByteTokenizer, lambda: CharTokenizer.train("hello world")])
def test_tokenizer_json_round_trip(tmp_path, make):
    tok = make()
    tok.add_special_tokens(["<|user|>"])
    loaded = load_tokenizer(tok.save(tmp_path))
    assert type(loaded) is type(tok) and loaded.to_json() == tok.to_json()
    text = "hello<|user|>"
    assert loaded.encode(text, allow_special=True) == tok.encode(text, allow_special=True)


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(ConfigError, match="No tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"kind": "wordpiece"}')
    with pytest.raises(ConfigError, match="kind='wordpiece'"):
        load_tokenizer(tmp_path)
