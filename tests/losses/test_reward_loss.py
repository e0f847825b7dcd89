"""Bradley–Terry reward loss with margin (Llama 2) and centering (Eisenstein et al. 2023), by hand."""

import pytest
import torch

from minigpt.losses.reward import reward_loss

CHOSEN, REJECTED = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.5])  # r_w − r_l = [1, −1]


def test_bradley_terry():
    # mean(−log σ(1), −log σ(−1)) = mean(0.313262, 1.313262)
    assert float(reward_loss(CHOSEN, REJECTED)) == pytest.approx(0.8132617, abs=1e-6)


def test_margin_is_subtracted_inside_the_sigmoid():
    # r_w − r_l − m = [0.5, −1]: mean(0.474077, 1.313262)
    assert float(reward_loss(CHOSEN, REJECTED, margin=torch.tensor([0.5, 0.0]))) == pytest.approx(0.8936695, abs=1e-6)


def test_centering_adds_eta_times_mean_squared_sum():
    # (r_w + r_l)² = 9, 4 → mean 6.5; η = 0.01 → + 0.065
    assert float(reward_loss(CHOSEN, REJECTED, center_coef=0.01)) == pytest.approx(0.8132617 + 0.065, abs=1e-6)
