"""Byte-level BPE: the merges it learns, encode/decode, special tokens, files, builder, CLI and workers."""

from __future__ import annotations

import pickle
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.data.token_cache import encode_documents
from minigpt.tokenizer import BPETokenizer, load_tokenizer
from minigpt.tokenizer import build as build_module
from minigpt.tokenizer.bpe_learn import learn_tokens
from minigpt.utils.errors import ConfigError

TEXTS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n",
    "def add(a, b):\n    return a + b  # 1234567 numbers\n\n\tindented\r\n" * 3,
    "naïve café — 日本語のテキスト, emoji 😀🎉 and spaces     at the end   ",
]


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.train(TEXTS * 5, vocab_size=400, show_progress=False)


def test_learns_the_hand_computed_merges():
    # Pre-tokens: "hug" ×1, " hug" ×2, " pug" ×1, " pun" ×1. Pair counts: (u,g)=4 > (h,u)=3 → "ug";
    # then (h,ug)=3 → "hug"; then (" ",hug) and (" ",p) tie at 2: the smaller ids (32,112) < (32,257)
    # win → " p", then " hug". Every pair left occurs once < min_frequency=2, so training stops.
    tok = BPETokenizer.train(["hug hug hug pug pun"], vocab_size=1000, show_progress=False)
    assert tok.vocab[256:] == [b"ug", b"hug", b" p", b" hug"]
    assert tok.vocab_size == 256 + 4 + 3
    # " pug": "ug" (rank 256) merges before " p" (258); " pug" itself is no token.
    assert tok.encode_python("hug pug") == tok.encode_ordinary("hug pug") == [257, 258, 256]


def _naive_learn(word_counts: dict[bytes, int], n_new: int, min_frequency: int) -> list[bytes]:
    """The textbook loop: recount every pair after every merge (what the incremental version avoids)."""
    vocab = [bytes([i]) for i in range(256)]
    index = {t: i for i, t in enumerate(vocab)}
    words = {tuple(w): f for w, f in word_counts.items()}
    added: list[bytes] = []
    while len(added) < n_new:
        counts: Counter = Counter()
        for w, f in words.items():
            for pair in zip(w, w[1:]):
                counts[pair] += f
        if not counts:
            break
        a, b = min(counts, key=lambda p: (-counts[p], p))
        if counts[(a, b)] < min_frequency:
            break
        merged = vocab[a] + vocab[b]
        if merged not in index:
            index[merged] = len(vocab)
            vocab.append(merged)
            added.append(merged)
        new_words: Counter = Counter()
        for w, f in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(index[merged])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += f
        words = new_words
    return added


@pytest.mark.parametrize("seed", range(3))
def test_incremental_counts_match_full_recount(seed):
    rng = random.Random(seed)
    # Few letters and long runs ("aaaa") so that overlaps and duplicate byte strings ("aa"+"a" vs
    # "a"+"aa") are exercised.
    word_counts = {
        bytes(rng.choice(b"aab c") for _ in range(rng.randint(1, 12))): rng.randint(1, 9) for _ in range(150)
    }
    assert learn_tokens(word_counts, 120, 2) == _naive_learn(word_counts, 120, 2)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_round_trip_any_unicode_and_paths_agree(tok, text):
    ids = tok.encode_python(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.n_base for i in ids)
    assert tok.encode_ordinary(text) == ids  # tiktoken fast path, built from our ranks


def test_fast_path_is_used_and_matches_on_a_long_text(tok):
    text = "".join(TEXTS) * 20
    assert tok._fast is not None
    assert tok.encode_ordinary(text) == tok.encode_python(text)
    assert len(tok.encode_ordinary(text)) < 0.6 * len(text.encode())  # it compresses its training text


def test_lone_surrogates_are_replaced_like_tiktoken(tok):
    assert tok.decode(tok.encode_python("a\ud800b")) == "a\ufffdb"
    assert tok.encode_python("a\ud800b") == tok.encode_ordinary("a\ud800b")


def test_invalid_utf8_decodes_with_replacement(tok):
    # Ids 0-255 of a trained tokenizer are the bytes: 0xFF never occurs in UTF-8, and 0xE2 0x82 is "€"
    # without its last byte.
    assert tok.decode([ord("a"), 0xFF, ord("b")]) == "a\ufffdb"
    assert tok.decode([0xE2, 0x82, ord("!")]) == "\ufffd!"


def test_special_tokens_are_atomic_and_never_come_from_ordinary_text(tok):
    text = "speak<|eos|>hear<|pad|>"
    ordinary = tok.encode(text)
    assert not set(ordinary) & {tok.bos_id, tok.eos_id, tok.pad_id}
    assert tok.decode(ordinary) == text
    allowed = tok.encode(text, allow_special=True)
    assert allowed.count(tok.eos_id) == 1 and allowed.count(tok.pad_id) == 1
    assert allowed[allowed.index(tok.eos_id) + 1 :] == tok.encode("hear") + [tok.pad_id]
    assert tok.decode(allowed) == text


def test_gpt4_preset_splits_digits_in_threes():
    tok = BPETokenizer([bytes([b]) for b in range(256)], pattern="gpt4")
    assert tok._regex.findall("1234567 it's") == ["123", "456", "7", " it", "'s"]


def test_tokenizer_json_and_tiktoken_files_round_trip(tok, tmp_path):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    loaded = load_tokenizer(tok.save(tmp_path))
    assert isinstance(loaded, BPETokenizer) and loaded.to_json() == tok.to_json()
    rank_file = tok.save_tiktoken(tmp_path / "tok.tiktoken")
    again = BPETokenizer.from_tiktoken(rank_file, special_tokens=list(tok.special_tokens))
    assert again.fingerprint() == tok.fingerprint()
    # tiktoken itself reads our export and encodes exactly as we do.
    enc = tiktoken.Encoding(
        "ours", pat_str=tok.pattern, mergeable_ranks=load_tiktoken_bpe(str(rank_file)), special_tokens={}
    )
    text = "".join(TEXTS)
    assert enc.encode_ordinary(text) == tok.encode_python(text)


def test_bad_settings_and_files_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer.pattern"):
        BPETokenizer.train(["x"], 300, pattern="(unclosed", show_progress=False)
    with pytest.raises(ConfigError, match="vocab_size=200"):
        BPETokenizer.train(["x"], 200, show_progress=False)
    with pytest.raises(ConfigError, match="lacks 1 single bytes"):
        BPETokenizer([bytes([b]) for b in range(255)])
    with pytest.raises(ConfigError, match="not 0..1"):
        BPETokenizer.from_tiktoken(b"IQ== 0\nIg== 2\n")
    with pytest.raises(ConfigError, match="Line 1"):
        BPETokenizer.from_tiktoken(b"not-a-rank-line\n")


def test_pickles_and_encodes_in_worker_processes(tok):
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode_python(TEXTS[0]) == tok.encode_python(TEXTS[0])
    docs = TEXTS * 4
    assert encode_documents(tok, docs, num_proc=2) == [tok.encode_ordinary(d) for d in docs]


def test_builder_caches_the_trained_tokenizer(tmp_path, monkeypatch):
    kwargs = {"vocab_size": 300, "cache_dir": str(tmp_path)}
    first = build_module.bpe_tokenizer(lambda: TEXTS, **kwargs)
    assert len(list((tmp_path / "tokenizers").iterdir())) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although a cached tokenizer exists")

    monkeypatch.setattr(BPETokenizer, "train", no_training)
    again = build_module.bpe_tokenizer(lambda: TEXTS, **kwargs)
    assert again.to_json() == first.to_json()
    with pytest.raises(AssertionError, match="retrained"):  # other texts → another key → trains
        build_module.bpe_tokenizer(lambda: TEXTS[:1], **kwargs)


def test_a_run_with_tokenizer_bpe_trains_and_saves_it(compose_train, tmp_path):
    from minigpt.run import train

    cfg = compose_train(
        "tokenizer=bpe", "tokenizer.vocab_size=320", "trainer.max_steps=4", "trainer.val_check_interval=4"
    )
    metrics = train(cfg)
    saved = load_tokenizer(tmp_path / "run" / "model")
    assert isinstance(saved, BPETokenizer) and saved.vocab_size == 320 and metrics["val/bpb"] > 0
