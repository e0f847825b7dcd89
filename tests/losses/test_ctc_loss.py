"""CTC written out equals torch's `ctc_loss` (values and gradients); greedy decoding merges repeats and drops blanks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minigpt.losses.ctc import ctc_greedy, ctc_loss


def test_equals_torch_ctc_loss_on_a_fixed_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 12, 6, generator=g, requires_grad=True)  # B=3, T=12, K=6 (blank = 5)
    targets = torch.tensor([[1, 2, 2, 3], [4, 4, 0, 0], [0, 1, 2, 0]])  # repeated labels need a blank between
    target_lengths = torch.tensor([4, 2, 3])
    input_lengths = torch.tensor([12, 7, 9])
    lp = logits.log_softmax(-1)
    for reduction in ("none", "sum", "mean"):
        ours = ctc_loss(lp, targets, input_lengths, target_lengths, blank=5, reduction=reduction)
        ref = F.ctc_loss(lp.transpose(0, 1), targets, input_lengths, target_lengths, blank=5, reduction=reduction)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    (grad_ours,) = torch.autograd.grad(ctc_loss(lp, targets, input_lengths, target_lengths, blank=5), logits)
    lp = logits.log_softmax(-1)
    ref = F.ctc_loss(lp.transpose(0, 1), targets, input_lengths, target_lengths, blank=5)
    (grad_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-4, atol=1e-5)


def test_a_worked_two_frame_case():
    # T=2, labels {a=0, ∅=1}, target "a": paths "a a", "a ∅", "∅ a" → p = y1(a)y2(a) + y1(a)y2(∅) + y1(∅)y2(a).
    p = torch.tensor([[[0.6, 0.4], [0.3, 0.7]]])
    expected = -math.log(0.6 * 0.3 + 0.6 * 0.7 + 0.4 * 0.3)
    loss = ctc_loss(p.log(), torch.tensor([[0]]), torch.tensor([2]), torch.tensor([1]), blank=1, reduction="sum")
    assert abs(float(loss) - expected) < 1e-6
    # "a a" needs a blank between the two a's: impossible in 2 frames
    loss = ctc_loss(p.log(), torch.tensor([[0, 0]]), torch.tensor([2]), torch.tensor([2]), blank=1, reduction="sum")
    assert math.isinf(float(loss))


def test_greedy_decoding_collapses_repeats_and_blanks():
    blank = 0
    frames = [[3, 3, 0, 3, 5, 5, 0, 0, 2], [0, 0, 0, 7, 7, 7, 0, 0, 0]]
    log_probs = F.one_hot(torch.tensor(frames), 8).float()
    assert ctc_greedy(log_probs, blank) == [[3, 3, 5, 2], [7]]
    assert ctc_greedy(log_probs, blank, lengths=torch.tensor([4, 9])) == [[3, 3], [7]]
