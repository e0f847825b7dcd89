"""Counterfactual bias: swapping keeps case and whole words, the gap is the formula, and counterfactual data
augmentation removes a sentiment gap a toy model learned from a biased corpus."""

from __future__ import annotations

import string

import pytest
import torch

from minigpt.alignment.bias import CounterfactualCorpus, completion_sentiment, counterfactual, sentiment_gap, swap_table
from minigpt.data.corpora import Corpus
from minigpt.inference.config import GenerationConfig
from minigpt.losses.lm import lm_loss
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

TOKENIZER = CharTokenizer.train(string.ascii_lowercase + " .")
BIASED = ["he is good.", "he is kind.", "she is bad.", "she is sad."]


class Lines(Corpus):
    name = "lines"

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def documents(self) -> list[str]:
        return self.lines


def train_on(lines: list[str], steps: int = 120) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=TOKENIZER.vocab_size))
    ids = torch.tensor([TOKENIZER.encode(line.ljust(12)) for line in lines])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = lm_loss(model(ids[:, :-1])[0], ids[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def test_counterfactual_swaps_whole_words_both_ways_and_keeps_case() -> None:
    table = swap_table(["gender", "name"])
    assert counterfactual("He told his Sister, and Bob saw HIM.", table) == "She told her Brother, and Ann saw HER."
    assert counterfactual("she gave the sheep to ann", table) == "he gave the sheep to bob"
    with pytest.raises(ConfigError, match="axes"):
        swap_table(["colour"])


def test_gap_is_the_difference_of_mean_sentiments() -> None:
    numbers = sentiment_gap([([0.5, 0.1], [0.0, 0.0]), ([0.0, 0.0], [0.2, 0.2])])
    assert numbers["gap"] == pytest.approx((0.3 - 0.2) / 2) and numbers["abs_gap"] == pytest.approx((0.3 + 0.2) / 2)


def test_augmentation_removes_a_learned_gap() -> None:
    augmented = CounterfactualCorpus(Lines(BIASED), ["gender"])
    assert augmented.documents() == BIASED + ["she is good.", "she is kind.", "he is bad.", "he is sad."]
    config = GenerationConfig(max_new_tokens=6, temperature=1.0)
    gaps = []
    for lines in (BIASED, augmented.documents()):
        he, she = completion_sentiment(train_on(lines), TOKENIZER, ["he is", "she is"], 32, config)
        gaps.append(sentiment_gap([(he, she)])["gap"])
    assert gaps[0] > 0.5 and abs(gaps[1]) < gaps[0] / 3  # 0.93 → 0.20 on this seed
