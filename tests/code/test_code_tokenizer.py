"""`tokenizer=bpe_code`: the code pre-tokenisation rule and the fill-in-the-middle sentinels as special tokens."""

from __future__ import annotations

import random
from pathlib import Path

import regex
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from minigpt.code.fim import FIM_TOKENS, apply_fim
from minigpt.tokenizer.bpe import PATTERNS

ROOT = Path(__file__).resolve().parents[2]
SOURCE = """class Stack:
    def push(self, item_2):
        if len(self.items) >= 1000:
            raise OverflowError("full")
        self.items **= 2


def empty():
    return Stack()
"""


def test_newlines_with_indentation_and_identifiers_are_whole_pretokens() -> None:
    pieces = regex.findall(PATTERNS["code"], SOURCE)
    assert "".join(pieces) == SOURCE
    assert "\n        " in pieces and "\n\n\n" in pieces and " item_2" in pieces and " **=" in pieces
    assert " 100" in pieces and "0" in pieces  # numbers in groups of at most three digits


def test_bpe_code_config_learns_a_tokenizer_with_fim_tokens() -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf" / "tokenizer"), version_base="1.3"):
        cfg = compose(config_name="bpe_code", overrides=["vocab_size=400", "cache_dir=null"])
    tokenizer = instantiate(cfg, texts=lambda: [SOURCE * 3])
    example = apply_fim(SOURCE, random.Random(0), fim_rate=1.0, middle_by="ast")
    ids = tokenizer.encode(example, allow_special=True)
    sentinels = [tokenizer.encode(t, allow_special=True) for t in FIM_TOKENS]
    assert all(len(s) == 1 for s in sentinels) and all(s[0] in ids for s in sentinels)
    assert tokenizer.decode(ids) == example
