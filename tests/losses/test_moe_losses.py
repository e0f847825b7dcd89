"""MoE router losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.losses.moe import load_balancing_loss, router_z_loss


def test_balancing_loss_top1_hand_computed():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    chosen = torch.tensor([[0], [0], [1]])
    # f = (2/3, 1/3), P = (1.7/3, 1.3/3): 2 · (2/3·1.7/3 + 1/3·1.3/3) = 9.4/9
    assert load_balancing_loss(probs, chosen).item() == pytest.approx(9.4 / 9)


def test_balancing_loss_top2_counts_every_choice():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    chosen = torch.tensor([[0, 1], [1, 2]])
    # f = (1, 2, 1)/4, P = (0.3, 0.45, 0.25): 3 · (0.075 + 0.225 + 0.0625) = 1.0875
    assert load_balancing_loss(probs, chosen).item() == pytest.approx(1.0875)


@pytest.mark.parametrize("chosen", [[[0], [0], [0], [0]], [[0], [1], [2], [3]], [[3], [3], [1], [0]]])
def test_uniform_router_gives_the_documented_minimum_of_one(chosen):
    probs = torch.full((4, 4), 0.25)
    assert load_balancing_loss(probs, torch.tensor(chosen)).item() == pytest.approx(1.0)


def test_balancing_loss_gradient_flows_only_through_mean_probabilities():
    probs = torch.tensor([[0.7, 0.3], [0.4, 0.6]], requires_grad=True)
    load_balancing_loss(probs, torch.tensor([[0], [0]])).backward()
    # ∂/∂p[n, i] of E · Σ fᵢ · mean_n p[n, i] = E · fᵢ / N with f = (1, 0)
    assert torch.allclose(probs.grad, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


def test_z_loss_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # logsumexp = ln 2 and ln 4 = 2 ln 2: ((ln 2)² + (2 ln 2)²) / 2
    assert router_z_loss(logits).item() == pytest.approx(2.5 * math.log(2) ** 2)


def test_z_loss_is_zero_for_log_probabilities_and_grows_with_logit_scale():
    logits = torch.tensor([[1.0, -1.0, 0.5]])
    assert router_z_loss(10 * logits) > router_z_loss(logits)
    assert router_z_loss(logits - torch.logsumexp(logits, -1, keepdim=True)).item() == pytest.approx(0.0, abs=1e-10)
