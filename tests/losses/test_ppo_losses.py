"""PPO's pure functions against hand-computed values (γ, λ < 1, masks with padding)."""

import math

import pytest
import torch

from minigpt.losses.ppo import (
    AdaptiveKLController,
    RunningMoments,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_per_token,
    policy_loss,
    token_rewards,
    value_loss,
    whiten,
)


def test_gae_matches_a_hand_computed_example():
    # Row 0 has 3 reply tokens; row 1 has 2 and one padding column holding garbage that must be ignored.
    rewards = torch.tensor([[0.1, -0.2, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.3, 0.8], [1.0, 0.5, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # Row 0: δ2 = 1 − 0.8 = 0.2; δ1 = −0.2 + 0.9·0.8 − 0.3 = 0.22; δ0 = 0.1 + 0.9·0.3 − 0.5 = −0.13;
    # A2 = 0.2, A1 = 0.22 + 0.72·0.2 = 0.364, A0 = −0.13 + 0.72·0.364 = 0.13208.
    # Row 1: δ1 = 2 − 0.5 = 1.5; δ0 = 0.9·0.5 − 1 = −0.55; A0 = −0.55 + 0.72·1.5 = 0.53.
    expected = torch.tensor([[0.13208, 0.364, 0.2], [0.53, 1.5, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, torch.tensor([[0.63208, 0.664, 1.0], [1.53, 2.0, 0.0]]))


def test_gae_with_lambda_one_and_gamma_one_gives_monte_carlo_returns():
    rewards = torch.tensor([[0.0, 0.0, 3.0]])
    values = torch.tensor([[1.0, 2.0, 0.5]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(returns, torch.tensor([[3.0, 3.0, 3.0]]))
    torch.testing.assert_close(advantages, returns - values)


def test_clipped_policy_loss_matches_its_formula():
    ratios = torch.tensor([[1.5, 0.7, 1.1, 9.0]])  # the last token is padding
    old = torch.log(torch.tensor([[0.2, 0.4, 0.3, 0.1]]))
    advantages = torch.tensor([[1.0, -1.0, 2.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = policy_loss(old + ratios.log(), old, advantages, mask, clip=0.2)
    # min(1.5·1, 1.2·1) = 1.2; min(0.7·−1, 0.8·−1) = −0.8; min(2.2, 2.2) = 2.2 → loss = −2.6 / 3.
    assert out.loss.item() == pytest.approx(-2.6 / 3, abs=1e-6)
    assert out.clip_fraction.item() == pytest.approx(2 / 3)
    k3 = [(r - 1) - math.log(r) for r in (1.5, 0.7, 1.1)]
    assert out.approx_kl.item() == pytest.approx(sum(k3) / 3, abs=1e-6)


def test_policy_loss_gradient_vanishes_where_the_ratio_is_clipped():
    logp = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_()
    out = policy_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2), clip=0.2)
    out.loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1] < 0


def test_clipped_value_loss_matches_its_formula():
    values, old = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 2.1]])
    returns, mask = torch.tensor([[2.0, 1.0]]), torch.ones(1, 2)
    loss, clipped = value_loss(values, old, returns, mask, clip=0.2)
    # t0: max((1 − 2)², (0.7 − 2)²) = 1.69; t1: max((2 − 1)², (2.0 − 1)²) = 1 → ½ · mean = 0.6725.
    assert loss.item() == pytest.approx(0.6725)
    assert clipped.item() == pytest.approx(0.5)
    plain, _ = value_loss(values, old, returns, mask, clip=None)
    assert plain.item() == pytest.approx(0.5)


def test_kl_estimators():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_per_token(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_per_token(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))
    assert kl_per_token(ref, logp, "k3").item() > 0  # k3 is never negative, even where k1 is
    with pytest.raises(ValueError, match="k2"):
        kl_per_token(logp, ref, "k2")


def test_token_rewards_put_the_score_on_the_last_reply_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards = token_rewards(torch.tensor([1.0, 2.0]), kl, mask, kl_coef=0.5)
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, -0.1, 0.85], [-0.2, 1.75, 0.0]]))


def test_whiten_gives_zero_mean_unit_variance_over_real_tokens_only():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    out = whiten(x, mask)
    real = out[mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.var(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert out[1, 1] == 0 and out[1, 2] == 0


def test_running_moments_equal_the_moments_of_everything_seen():
    torch.manual_seed(0)
    chunks = [torch.randn(5) * 3 + 1, torch.randn(7), torch.randn(2) + 4]
    moments = RunningMoments()
    for chunk in chunks:
        moments.update(chunk)
    everything = torch.cat(chunks)
    assert moments.mean == pytest.approx(everything.mean().item(), abs=1e-5)
    assert moments.std == pytest.approx(everything.std(unbiased=False).item(), abs=1e-5)
    normalized = moments.normalize(torch.tensor([everything.mean().item() + 100.0]), clip=5.0)
    assert normalized.item() == 5.0
    restored = RunningMoments()
    restored.load_state_dict(moments.state_dict())
    assert (restored.mean, restored.var, restored.count) == (moments.mean, moments.var, moments.count)


def test_adaptive_kl_controller_moves_beta_towards_the_target():
    controller = AdaptiveKLController(0.1, target=1.0, horizon=100)
    controller.update(kl=2.0, n=10)  # error clipped to +0.2 → β · (1 + 0.2 · 10/100)
    assert controller.value == pytest.approx(0.102)
    controller.update(kl=0.5, n=10)  # error −0.5 clipped to −0.2
    assert controller.value == pytest.approx(0.102 * 0.98)
    fixed = AdaptiveKLController(0.1)
    fixed.update(kl=50.0, n=10)
    assert fixed.value == 0.1


def test_entropy_and_explained_variance():
    assert entropy_from_logits(torch.zeros(2, 4)).tolist() == pytest.approx([math.log(4)] * 2)
    returns, mask = torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3)
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 3), 2.0), returns, mask).item() == pytest.approx(0.0)
