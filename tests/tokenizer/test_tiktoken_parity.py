"""With GPT-2's rank file, our BPE gives tiktoken's r50k/gpt2 ids, on both of our encoding paths.

The rank file is the pinned `openai-whisper` sdist's `whisper/assets/gpt2.tiktoken` (fetched from PyPI
once into the cache). tiktoken is given the same ranks and its own r50k split pattern, so the test also
checks that our "gpt2" preset splits text as tiktoken's pattern does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.data.assets import GPT2_TIKTOKEN, GPT2_TIKTOKEN_MEMBER, fetch, read_members
from minigpt.data.corpora import ShakespearePlays
from minigpt.tokenizer import BPETokenizer

tiktoken = pytest.importorskip("tiktoken")
pytestmark = pytest.mark.slow

# sha256 of r50k_base.tiktoken as pinned by tiktoken itself (tiktoken_ext/openai_public.py).
R50K_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"

VARIED = [
    "Hello world! DON'T stop; it's 2024, we'll see. They've 3.14159 apples & 1,000,000 pears.",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n\treturn fib(n-1)+fib(n-2)  # 0x1F\r\n",
    "emoji 😀👍🏽👨‍👩‍👧 flags 🇫🇷, CJK 日本語のテキスト 中文字符 한국어, RTL مرحبا שלום",
    "whitespace   runs\n\n\n   \t\t  end   ",
    "   leading and trailing   ",
    "combining e\u0301 and NBSP\u00a0here, zero-width\u200bjoin, Ω≈ç√∫",
    "<|endoftext|> looks special but is ordinary text here",
    "a" * 500 + " " + "ab" * 300,
]


@pytest.fixture(scope="module")
def rank_bytes() -> bytes:
    return next(iter(read_members(fetch(GPT2_TIKTOKEN), GPT2_TIKTOKEN_MEMBER).values()))


@pytest.fixture(scope="module")
def ours(rank_bytes) -> BPETokenizer:
    return BPETokenizer.from_tiktoken(rank_bytes, pattern="gpt2", special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def reference(rank_bytes, tmp_path_factory):
    """tiktoken's own gpt2 encoding: its loader, its pattern, the same rank file."""
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str

    path = tmp_path_factory.mktemp("ranks") / "gpt2.tiktoken"
    path.write_bytes(rank_bytes)
    return tiktoken.Encoding(
        "gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=load_tiktoken_bpe(str(path)),
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )


def test_rank_file_is_tiktokens_r50k(rank_bytes):
    assert hashlib.sha256(rank_bytes).hexdigest() == R50K_SHA256


def test_ids_equal_tiktoken_on_a_varied_corpus(ours, reference):
    plays = ShakespearePlays().documents()
    texts = [*VARIED, plays[0][:200_000], plays[-1][-50_000:], Path(json.__file__).read_text()]
    for text in texts:
        expected = reference.encode_ordinary(text)
        assert ours.encode_python(text) == expected
        assert ours.encode_ordinary(text) == expected
        assert ours.decode(expected) == text
    assert ours.vocab_size == 50257 and ours.special_id("<|endoftext|>") == 50256
    text = "end of one<|endoftext|>start of the next"
    assert ours.encode(text, allow_special=True) == reference.encode(text, allowed_special="all")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_ids_equal_tiktoken_on_arbitrary_text(ours, reference, text):
    assert ours.encode_python(text) == reference.encode_ordinary(text)
