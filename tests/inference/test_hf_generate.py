"""Greedy and beam search give exactly the tokens of Hugging Face `generate` on the same weights."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.generate import Generation, GenerationConfig, generate

pytest.importorskip("transformers")
from minigpt.export.hf import to_hf  # noqa: E402

PROMPTS = [[5, 6, 7, 8, 9, 10], [1, 2, 3], [30, 31, 32, 33]]
PAD = 63  # not 0: HF beam search pads with eos when pad_token_id is falsy


def hf_generate(hf: torch.nn.Module, prompts: list[list[int]], **options: object) -> list[list[int]]:
    """HF `generate` on left-padded prompts; returns each row's new tokens, padding removed."""
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=mask, pad_token_id=PAD, do_sample=False, **options)
    return out[:, width:].tolist()


def assert_same(ours: Generation, theirs: list[list[int]]) -> None:
    for mine, row in zip(ours.token_lists(), theirs):
        assert row[: len(mine)] == mine and all(t == PAD for t in row[len(mine) :])


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_greedy_equals_hf(tiny_model, family: str) -> None:
    model = tiny_model(family, init_std=0.3)
    hf = to_hf(model)
    ours = generate(model, PROMPTS, GenerationConfig(max_new_tokens=20, strategy="greedy"), pad_id=PAD)
    assert_same(ours, hf_generate(hf, PROMPTS, max_new_tokens=20, eos_token_id=None))


@pytest.mark.parametrize("family", ["gpt", "llama"])
@pytest.mark.parametrize(("length_penalty", "early_stopping"), [(1.0, False), (2.0, False), (0.5, True)])
def test_beam_search_equals_hf(tiny_model, family: str, length_penalty: float, early_stopping: bool) -> None:
    model = tiny_model(family, init_std=0.3)
    hf = to_hf(model)
    # A stop token that the returned beams actually meet, so that hypotheses of different lengths compete.
    free = generate(model, PROMPTS[:1], GenerationConfig(max_new_tokens=12, strategy="beam")).token_lists()[0]
    for eos in free:
        config = GenerationConfig(
            max_new_tokens=12,
            strategy="beam",
            num_beams=4,
            num_return_sequences=2,
            length_penalty=length_penalty,
            early_stopping=early_stopping,
            stop_tokens=[eos],
        )
        ours = generate(model, PROMPTS, config, pad_id=PAD)
        if "stop" in ours.finish_reasons:
            break
    assert "stop" in ours.finish_reasons
    theirs = hf_generate(
        hf,
        PROMPTS,
        max_new_tokens=12,
        num_beams=4,
        num_return_sequences=2,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        eos_token_id=eos,
    )
    assert_same(ours, theirs)
