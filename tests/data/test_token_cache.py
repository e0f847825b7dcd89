"""Token cache: built once, reused, rebuilt when the corpus or the tokenizer changes; window datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minigpt.data import token_cache
from minigpt.data.corpora import TextFiles
from minigpt.data.text import RandomWindows, StridedWindows
from minigpt.data.token_cache import token_splits
from minigpt.tokenizer import ByteTokenizer, CharTokenizer
from minigpt.utils.errors import ConfigError


@pytest.fixture
def count_encodes(monkeypatch):
    calls = []
    real = token_cache.encode_documents

    def spy(tokenizer, documents, num_proc=1):
        calls.append(len(documents))
        return real(tokenizer, documents, num_proc)

    monkeypatch.setattr(token_cache, "encode_documents", spy)
    return calls


def test_cache_is_reused_and_rebuilt_on_changes(tmp_path, count_encodes):
    text = tmp_path / "a.txt"
    text.write_text("hello world, " * 200)
    tok = ByteTokenizer()
    first = token_splits(TextFiles(str(text)), tok, 0.1, str(tmp_path / "cache"))
    again = token_splits(TextFiles(str(text)), tok, 0.1, str(tmp_path / "cache"))
    assert first.folder == again.folder and len(count_encodes) == 1

    text.write_text("goodbye world, " * 200)  # the corpus changed → new cache
    changed = token_splits(TextFiles(str(text)), tok, 0.1, str(tmp_path / "cache"))
    assert changed.folder != first.folder and len(count_encodes) == 2

    other_tok = CharTokenizer.train("goodbye world, ")  # the tokenizer changed → new cache
    retok = token_splits(TextFiles(str(text)), other_tok, 0.1, str(tmp_path / "cache"))
    assert retok.folder != changed.folder and len(count_encodes) == 3


def test_splits_hold_every_token_with_eos_between_documents(tmp_path):
    (tmp_path / "a.txt").write_text("abc" * 30)
    (tmp_path / "b.txt").write_text("xyz" * 30)
    tok = ByteTokenizer()
    splits = token_splits(TextFiles(str(tmp_path / "*.txt")), tok, 0.25, str(tmp_path / "cache"))
    tokens = np.concatenate([splits.load("train"), splits.load("val")])
    assert len(tokens) == 2 * 90 + 2
    assert tok.decode(tokens.tolist()) == "abc" * 30 + "<|eos|>" + "xyz" * 30 + "<|eos|>"
    assert splits.val_tokens == int(len(tokens) * 0.25)
    assert splits.train_bytes + splits.val_bytes == 180  # eos tokens carry no text bytes


def test_random_windows_are_a_function_of_seed_and_index():
    tokens = np.arange(1000, dtype=np.uint16)
    a = RandomWindows(tokens, 16, 100, seed=1)
    b = RandomWindows(tokens, 16, 100, seed=1)
    x, y = a[7]
    torch.testing.assert_close(x, b[7][0])
    torch.testing.assert_close(y, x + 1)  # targets are the inputs shifted by one
    assert not torch.equal(a[7][0], RandomWindows(tokens, 16, 100, seed=2)[7][0])


def test_strided_windows_do_not_overlap():
    windows = StridedWindows(np.arange(200, dtype=np.uint16), 16, max_windows=100)
    starts = [int(windows[i][0][0]) for i in range(len(windows))]
    assert len(windows) == 12 and starts == [16 * i for i in range(12)]


def test_too_little_text_is_a_config_error():
    with pytest.raises(ConfigError, match="seq_len=64"):
        RandomWindows(np.arange(10, dtype=np.uint16), 64, 10, seed=0)


def test_missing_text_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="matches no file"):
        TextFiles(str(tmp_path / "nope.txt"))
