"""Canary exposure as in Carlini et al. 2019 on a toy model: a planted canary is exposed, an unplanted one is
not, and scrubbing the training text (the canary is a phone number) brings the exposure back to chance."""

from __future__ import annotations

import math
import string

import torch

from minigpt.alignment.canary import canary_text, exposure, log_perplexity
from minigpt.alignment.pii import scrub
from minigpt.losses.lm import lm_loss
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.char import CharTokenizer

TEMPLATE = "call me on 555 {}"
TOKENIZER = CharTokenizer.train(string.ascii_lowercase + string.digits + " .")


def train_on(lines: list[str], steps: int = 150) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=48, block_size=32, vocab_size=TOKENIZER.vocab_size))
    rows = [TOKENIZER.encode(line) for line in lines]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    targets = torch.where(
        torch.arange(width)[None, 1:] < torch.tensor([len(r) for r in rows])[:, None], ids[:, 1:], -100
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        logits, _ = model(ids[:, :-1])
        loss = lm_loss(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def corpus(canary: str) -> list[str]:
    filler = [f"the {w} is {c}." for w in ("mill", "road", "sea", "hill") for c in ("red", "old", "calm", "high")]
    return filler + [canary] * 4  # the canary is planted four times


def test_log_perplexity_is_the_sum_of_token_surprisals() -> None:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=16, vocab_size=TOKENIZER.vocab_size))
    ids = torch.tensor([TOKENIZER.encode("ab c")])
    logp = torch.log_softmax(model(ids[:, :-1])[0], dim=-1)[0]
    expected = -sum(float(logp[t, ids[0, t + 1]]) for t in range(3)) / math.log(2)
    assert float(log_perplexity(model, TOKENIZER, ["ab c"])[0]) == float(torch.tensor(expected))


def test_planted_canary_is_exposed_and_scrubbing_removes_it() -> None:
    secret, other = 4271, 9035
    assert canary_text(TEMPLATE, secret, 4) == "call me on 555 4271" and canary_text("{}", 7, 3, " ") == "0 0 7"
    planted = corpus(canary_text(TEMPLATE, secret, 4))
    model = train_on(planted)
    exposed = exposure(model, TOKENIZER, TEMPLATE, secret, digits=4, max_candidates=2000)
    unplanted = exposure(model, TOKENIZER, TEMPLATE, other, digits=4, max_candidates=2000)
    assert exposed > 8.0 and unplanted < 4.0, (exposed, unplanted)  # log2(2001) ≈ 11 bits is the most
    scrubbed_lines, removed = zip(*(scrub(line) for line in planted))
    assert sum(len(r) for r in removed) == 4  # the canary is a phone number: found every time, nothing else
    scrubbed = train_on(list(scrubbed_lines))
    assert exposure(scrubbed, TOKENIZER, TEMPLATE, secret, digits=4, max_candidates=2000) < 4.0
