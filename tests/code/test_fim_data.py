"""`data.fim_rate`: FIM examples in the training split only, the validation split unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from minigpt.code.fim import FIM_PREFIX, FIM_TOKENS, FIMOptions, reassemble
from minigpt.data.corpora import TextFiles
from minigpt.data.token_cache import token_splits
from minigpt.tokenizer.bpe import BPETokenizer
from minigpt.utils.errors import ConfigError

FUNCTION = "def f{i}(x):\n    y = x * {i}\n    return y + 1\n"


@pytest.fixture
def corpus(tmp_path: Path) -> TextFiles:
    for i in range(20):
        (tmp_path / f"m{i:02d}.py").write_text(FUNCTION.format(i=i))
    return TextFiles(str(tmp_path / "*.py"))


def tokenizer_with(special: list[str], corpus: TextFiles) -> BPETokenizer:
    return BPETokenizer.train(corpus.documents(), 300, "code", special, 2)


def test_fim_rewrites_training_documents_and_leaves_validation_alone(corpus: TextFiles, tmp_path: Path) -> None:
    tok = tokenizer_with(["<|bos|>", "<|eos|>", "<|pad|>", *FIM_TOKENS], corpus)
    plain = token_splits(corpus, tok, 0.2, str(tmp_path / "cache"))
    fim = token_splits(corpus, tok, 0.2, str(tmp_path / "cache"), fim=FIMOptions(rate=1.0, middle_by="ast"))
    assert np.array_equal(plain.load("val"), fim.load("val"))
    prefix_id = tok.special_id(FIM_PREFIX)
    assert prefix_id not in plain.load("train") and prefix_id in fim.load("train")
    # Every FIM document reassembles into its file; with fim_rate=1 every whole training document is one.
    documents = tok.decode(fim.load("train").tolist()).split("<|eos|>")
    rewritten = [d for d in documents if d.startswith(FIM_PREFIX)]
    assert len(rewritten) >= 14 and all(reassemble(d) in corpus.documents() for d in rewritten)


def test_fim_needs_the_sentinel_tokens(corpus: TextFiles, tmp_path: Path) -> None:
    tok = tokenizer_with(["<|bos|>", "<|eos|>", "<|pad|>"], corpus)
    with pytest.raises(ConfigError, match="needs a tokenizer with the FIM tokens.*tokenizer=bpe_code"):
        token_splits(corpus, tok, 0.2, str(tmp_path / "cache"), fim=FIMOptions(rate=0.5))
    with pytest.raises(ConfigError, match="data.fim_rate=1.5 must be between 0 and 1"):
        FIMOptions(rate=1.5)
