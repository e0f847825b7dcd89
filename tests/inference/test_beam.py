"""Beam search against exhaustive search, and the consistency of what it returns."""

from __future__ import annotations

import itertools

import pytest
import torch

from minigpt.inference.generate import GenerationConfig, generate


def sequence_logprob(model: torch.nn.Module, prompt: list[int], tokens: tuple[int, ...]) -> float:
    seq = torch.tensor([prompt + list(tokens)])
    with torch.no_grad():
        logp = torch.log_softmax(model(seq)[0][0], dim=-1)
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(tokens))


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_wide_beam_finds_the_exhaustive_argmax(tiny_model, family: str) -> None:
    """With num_beams = V² every 2-token prefix survives, so 3-token beam search is exact."""
    vocab, prompt = 5, [1, 3]
    model = tiny_model(family, init_std=0.5, vocab_size=vocab)
    scores = {seq: sequence_logprob(model, prompt, seq) for seq in itertools.product(range(vocab), repeat=3)}
    best = max(scores, key=scores.get)
    out = generate(model, [prompt], GenerationConfig(max_new_tokens=3, strategy="beam", num_beams=vocab**2))
    assert tuple(out.token_lists()[0]) == best
    assert abs(float(out.scores[0]) - scores[best] / 3) < 1e-5  # length_penalty 1: mean log-prob


def test_returned_scores_logprobs_and_reasons_agree(tiny_model) -> None:
    model = tiny_model("gpt", init_std=0.3)
    free = generate(model, [[4, 5, 6]], GenerationConfig(max_new_tokens=12, strategy="beam")).token_lists()[0]
    config = GenerationConfig(
        max_new_tokens=12,
        strategy="beam",
        num_beams=4,
        num_return_sequences=4,
        stop_tokens=[free[5]],
        length_penalty=0.7,
    )
    out = generate(model, [[4, 5, 6], [7, 1]], config, pad_id=-1)
    assert out.tokens.shape == (8, 12)
    for row in range(8):
        n = int(out.lengths[row])
        tokens = out.token_lists()[row]
        assert abs(float(out.scores[row]) - float(out.logprobs[row, :n].sum()) / n**0.7) < 1e-5
        assert out.finish_reasons[row] == ("stop" if tokens[-1] == free[5] else "length")
        assert (out.tokens[row, n:] == -1).all()
    for group in out.scores.view(2, 4):
        assert torch.all(group[:-1] >= group[1:])  # best first
    assert "stop" in out.finish_reasons
