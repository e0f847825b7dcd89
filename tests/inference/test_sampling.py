"""Logit processors on crafted distributions: filtered tokens are never drawn, kept ones keep their odds."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.inference.sampling import process_logits, repetition_penalty, sample_from

# A crafted distribution over 8 ids, placed at scrambled ids so that sorting and scattering back are exercised.
PROBS = {6: 0.40, 2: 0.25, 7: 0.15, 0: 0.10, 4: 0.05, 1: 0.03, 5: 0.015, 3: 0.005}
DRAWS = 20_000


def crafted_logits() -> torch.Tensor:
    logits = torch.empty(8)
    for token, p in PROBS.items():
        logits[token] = math.log(p)
    return logits


def draw(**options: float) -> torch.Tensor:
    """DRAWS samples from the crafted distribution after `process_logits(**options)`."""
    logits = process_logits(crafted_logits().expand(DRAWS, 8), **options)
    return sample_from(logits, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("options", "allowed"),
    [
        (dict(top_k=1), {6}),
        (dict(top_k=3), {6, 2, 7}),
        (dict(top_p=0.5), {6, 2}),  # 0.40 < 0.5, then 0.65 ≥ 0.5: the crossing token is in
        (dict(top_p=0.7), {6, 2, 7}),  # 0.65 < 0.7 → 7 is in; 0.80 ≥ 0.7 → 0 is out
        (dict(top_p=0.05), {6}),  # the top token always stays
        (dict(min_p=0.3), {6, 2, 7}),  # p ≥ 0.3 · 0.40 = 0.12
        (dict(top_k=4, top_p=0.9), {6, 2, 7, 0}),
        (dict(temperature=0.5, top_p=0.7), {6, 2}),  # p² renormalised: 0.62, 0.24, … → 2 tokens reach 0.7
    ],
)
def test_filters_never_sample_outside_the_allowed_set(options: dict, allowed: set[int]) -> None:
    counts = torch.bincount(draw(**options), minlength=8)
    assert {i for i in range(8) if counts[i] > 0} == allowed


def test_kept_tokens_keep_their_relative_odds() -> None:
    counts = torch.bincount(draw(top_k=3), minlength=8).float() / DRAWS
    kept = 0.40 + 0.25 + 0.15
    for token in (6, 2, 7):
        assert abs(counts[token] - PROBS[token] / kept) < 0.015


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, -0.5]])
    seen = torch.tensor([[True, True, False, False]])
    assert repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -2.0, 0.5, -0.5]]


def test_temperature_scales_logits() -> None:
    logits = torch.tensor([[1.0, -2.0, 0.25]])
    assert process_logits(logits, temperature=0.5).tolist() == [[2.0, -4.0, 0.5]]
