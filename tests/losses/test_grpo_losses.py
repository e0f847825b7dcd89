"""The GRPO family's pure functions against hand-computed values (groups of 4, one reply masked short)."""

import math

import pytest
import torch

from minigpt.losses.grpo import (
    group_advantages,
    grpo_loss,
    informative_groups,
    normalise_tokens,
    overlong_penalty,
)

# Two prompts, G = 4 replies each: the first group's rewards differ, the second's are all equal.
REWARDS = torch.tensor([2.0, 0.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0])
EPS = 1e-4


def test_grpo_advantage_divides_by_the_group_std():
    # Group 1: mean 1, centred [1, −1, 0, 0], sample std √((1 + 1 + 0 + 0) / 3) = √(2/3) ≈ 0.8165.
    # Group 2: centred 0 everywhere, std 0: 0 / (0 + eps) = 0, not NaN.
    out = group_advantages(REWARDS, 4, "grpo")
    std = math.sqrt(2 / 3)
    expected = torch.tensor([1 / (std + EPS), -1 / (std + EPS), 0, 0, 0, 0, 0, 0])
    torch.testing.assert_close(out, expected)


def test_dr_grpo_scale_none_keeps_the_centred_rewards():
    out = group_advantages(REWARDS, 4, "grpo", scale_rewards="none")
    torch.testing.assert_close(out, torch.tensor([1.0, -1.0, 0, 0, 0, 0, 0, 0]))


def test_rloo_baseline_is_the_mean_of_the_other_replies():
    # Reply 0: others (0 + 1 + 1) / 3 = 2/3 → 2 − 2/3 = 4/3; reply 1: others 4/3 → −4/3;
    # replies 2, 3: others (2 + 0 + 1) / 3 = 1 → 0. RLOO's own scale is none.
    out = group_advantages(REWARDS, 4, "rloo")
    torch.testing.assert_close(out, torch.tensor([4 / 3, -4 / 3, 0, 0, 0, 0, 0, 0]))


def test_reinforce_pp_whitens_the_group_centred_rewards_over_the_batch():
    # Centred: [1, −1, 0, 0, 0, 0, 0, 0]; batch mean 0; sample std over 8 values √(2/7) ≈ 0.5345.
    out = group_advantages(REWARDS, 4, "reinforce_pp")
    std = math.sqrt(2 / 7)
    expected = torch.tensor([1 / (std + EPS), -1 / (std + EPS), 0, 0, 0, 0, 0, 0])
    torch.testing.assert_close(out, expected)
    # "batch" on GRPO's baseline is the same formula: REINFORCE++ is GRPO's baseline with a batch scale.
    torch.testing.assert_close(group_advantages(REWARDS, 4, "grpo", scale_rewards="batch"), expected)


def test_group_scale_differs_from_batch_scale_when_groups_spread_differently():
    rewards = torch.tensor([1.0, 0.0, 10.0, 0.0])  # two groups of 2: centred [0.5, −0.5, 5, −5]
    group = group_advantages(rewards, 2, "grpo", scale_rewards="group")
    # Each group's sample std: √(0.5) and √(50); both groups then give ±(1/√2)/(1+…) ≈ ±0.7070.
    assert group[0].item() == pytest.approx(0.5 / (math.sqrt(0.5) + EPS))
    assert group[2].item() == pytest.approx(5 / (math.sqrt(50) + EPS))
    batch = group_advantages(rewards, 2, "grpo", scale_rewards="batch")
    # One std for all four: √((0.25 + 0.25 + 25 + 25) / 3) = √(50.5/3) ≈ 4.1028.
    std = math.sqrt(50.5 / 3)
    torch.testing.assert_close(batch, torch.tensor([0.5, -0.5, 5.0, -5.0]) / (std + EPS))


def test_rewards_that_do_not_split_into_groups_are_refused():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)


def test_informative_groups_drops_groups_whose_rewards_are_all_equal():
    assert informative_groups(REWARDS, 4).tolist() == [True, False]
    assert informative_groups(torch.tensor([0.0, 0.0, 1.0, 0.0]), 2).tolist() == [False, True]


# A group of 4 replies, per-token losses, the last reply cut short at one token (its 9s are padding).
PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [1.0, 1.0, 1.0], [2.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
# Row sums 6, 15, 3, 2 (total 26); row means 2, 5, 1, 2; 10 active tokens.


def test_grpo_normalisation_is_the_mean_of_per_reply_means():
    assert normalise_tokens(PER_TOKEN, MASK, "grpo").item() == pytest.approx((2 + 5 + 1 + 2) / 4)  # 2.5


def test_bnpo_normalisation_divides_by_the_active_tokens():
    assert normalise_tokens(PER_TOKEN, MASK, "bnpo").item() == pytest.approx(26 / 10)


def test_dr_grpo_normalisation_divides_by_rows_times_the_longest_reply_allowed():
    # L_max = 4 (max_new_tokens), wider than this batch's 3 columns: 26 / (4 · 4) = 1.625.
    assert normalise_tokens(PER_TOKEN, MASK, "dr_grpo", max_length=4).item() == pytest.approx(1.625)
    with pytest.raises(ValueError, match="max_length"):
        normalise_tokens(PER_TOKEN, MASK, "dr_grpo")


def test_dapo_normalisation_divides_by_the_accumulated_batch_tokens():
    # This micro-batch is half of an accumulated batch of 20 active tokens: 26 / 20 = 1.3.
    assert normalise_tokens(PER_TOKEN, MASK, "dapo", num_tokens=20).item() == pytest.approx(1.3)
    assert normalise_tokens(PER_TOKEN, MASK, "dapo").item() == pytest.approx(2.6)


def test_grpo_loss_matches_a_hand_computed_example():
    # Two replies; reply 1 is one token long. Ratios [1.5, 1.0] and [0.7, ·]; advantages +1 and −1;
    # ε = 0.2, ε_high = 0.28.
    old = torch.log(torch.tensor([[0.2, 0.3], [0.4, 0.5]]))
    logp = old + torch.log(torch.tensor([[1.5, 1.0], [0.7, 3.0]]))
    mask = torch.tensor([[True, True], [True, False]])
    # π_ref / π = 0.5 at reply 0's first token, 1 elsewhere.
    ref = logp + torch.log(torch.tensor([[0.5, 1.0], [1.0, 1.0]]))
    out = grpo_loss(logp, old, torch.tensor([1.0, -1.0]), mask, 0.2, 0.28, beta=0.1, ref_logprobs=ref)
    # Reply 0: min(1.5, 1.28) = 1.28 and min(1, 1) = 1 → ℓ = [−1.28, −1], mean −1.14.
    # Reply 1: min(0.7·−1, 0.8·−1) = −0.8 → ℓ = 0.8.  Policy part: (−1.14 + 0.8) / 2 = −0.17.
    # k3 at reply 0's first token: 0.5 − ln 0.5 − 1 = 0.193147; per-reply means 0.0965735, 0 → 0.0482868.
    k3 = 0.5 - math.log(0.5) - 1
    assert out.policy_loss.item() == pytest.approx(-0.17, abs=1e-6)
    assert out.loss.item() == pytest.approx(-0.17 + 0.1 * (k3 / 2) / 2, abs=1e-6)
    assert out.kl.item() == pytest.approx(k3 / 3, abs=1e-6)
    assert out.clip_high.item() == pytest.approx(1 / 3)  # ratio 1.5 > 1.28 with A > 0
    assert out.clip_low.item() == pytest.approx(1 / 3)  # ratio 0.7 < 0.8 with A < 0


def test_clip_higher_lets_a_ratio_above_one_plus_epsilon_keep_its_gradient():
    # ρ = 1.25 > 1 + ε with A > 0. Symmetric ε = 0.2 clips it at 1.2 (no gradient); DAPO's ε_high = 0.28 does not.
    old = torch.zeros(1, 1)
    mask = torch.ones(1, 1, dtype=torch.bool)
    losses, grads = {}, {}
    for high in (0.2, 0.28):
        logp = torch.full((1, 1), math.log(1.25), requires_grad=True)
        out = grpo_loss(logp, old, torch.ones(1), mask, epsilon=0.2, epsilon_high=high)
        out.loss.backward()
        losses[high], grads[high] = out.loss.item(), logp.grad.item()
        assert out.clip_high.item() == (1.0 if high == 0.2 else 0.0)
    assert losses[0.2] == pytest.approx(-1.2)
    assert losses[0.28] == pytest.approx(-1.25)
    assert grads[0.2] == 0.0
    assert grads[0.28] == pytest.approx(-1.25)  # d(−ρ)/d log π = −ρ


def test_clip_low_bounds_a_negative_advantage_at_one_minus_epsilon():
    old = torch.zeros(1, 1)
    logp = torch.full((1, 1), math.log(0.5), requires_grad=True)
    out = grpo_loss(logp, old, -torch.ones(1), torch.ones(1, 1, dtype=torch.bool), epsilon=0.2, epsilon_high=0.28)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(0.8)  # −min(−0.5, −0.8)
    assert logp.grad.item() == 0.0
    assert out.clip_low.item() == 1.0


def test_one_update_per_rollout_gives_the_reinforce_gradient():
    # μ = 1: old = logp.detach(), ρ = 1, ∇ℓ = −Â ∇log π, averaged by the grpo normalisation.
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    out = grpo_loss(logp, logp.detach(), torch.tensor([2.0, -1.0]), mask)
    out.loss.backward()
    # Reply 0: −2 / 2 tokens / 2 replies = −0.5 per token; reply 1: +1 / 1 token / 2 replies = 0.5.
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, -0.5], [0.5, 0.0]]))


def test_beta_needs_reference_logprobs():
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1, dtype=torch.bool), beta=0.1)


def test_overlong_penalty_ramps_over_the_last_cache_tokens():
    # L_max = 8, cache 4: free up to 4 tokens, then (4 − |y|) / 4, and −1 at or past the limit.
    lengths = torch.tensor([3, 4, 5, 7, 8, 9])
    torch.testing.assert_close(overlong_penalty(lengths, 8, 4), torch.tensor([0.0, 0.0, -0.25, -0.75, -1.0, -1.0]))
    with pytest.raises(ValueError, match="cache"):
        overlong_penalty(lengths, 8, 0)
