"""Sequence log-probs count completion tokens only: prompt and padding contribute nothing."""

import math

import pytest
import torch

from minigpt.losses.lm import IGNORE_INDEX
from minigpt.losses.logprobs import completion_targets, sequence_logprobs, token_logprobs


def test_token_logprobs_by_hand_and_zero_where_ignored():
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0], [5.0, -5.0]]])  # p = (1/4, 3/4), (1/2, 1/2), ...
    targets = torch.tensor([[1, 0, IGNORE_INDEX]])
    lp = token_logprobs(logits, targets)
    torch.testing.assert_close(lp, torch.tensor([[math.log(0.75), math.log(0.5), 0.0]]))
    assert float(sequence_logprobs(logits, targets)) == pytest.approx(math.log(0.75 * 0.5), abs=1e-6)


def test_completion_targets_mask_prompt_and_padding():
    ids = torch.tensor([[1, 2, 3, 4, 0, 0], [1, 2, 5, 6, 7, 8]])  # row 0: prompt 1 2, reply 3 4, padding
    mask = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    inputs, targets = completion_targets(ids, mask)
    torch.testing.assert_close(inputs, ids[:, :-1])
    I = IGNORE_INDEX  # noqa: E741
    torch.testing.assert_close(targets, torch.tensor([[I, 3, 4, I, I], [I, I, 6, 7, 8]]))


def test_changing_prompt_or_padding_logits_leaves_the_sum_unchanged():
    torch.manual_seed(0)
    ids = torch.tensor([[1, 2, 3, 4, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 0, 0]], dtype=torch.bool)
    _, targets = completion_targets(ids, mask)
    logits = torch.randn(1, 5, 9)
    before = sequence_logprobs(logits, targets)
    logits[:, [0, 3, 4]] = torch.randn(1, 3, 9)  # positions predicting prompt / padding tokens
    torch.testing.assert_close(sequence_logprobs(logits, targets), before)
