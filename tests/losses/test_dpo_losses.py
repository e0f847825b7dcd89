"""DPO-family losses equal hand-computed values on fixed log-probs (Rafailov 2023, Azar 2023, SLiC, Chowdhury 2024).

Fixed inputs, β = 0.5: h = (π_w − ref_w) − (π_l − ref_l) = [1.0, 0.5], so β·h = [0.5, 0.25].
softplus(z) = log(1 + eᶻ) = −log σ(−z); values below were computed with a calculator from the formulas.
"""

import pytest
import torch

from minigpt.losses.dpo import dpo_loss

POLICY_W, POLICY_L = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.5])
REF_W, REF_L = torch.tensor([-1.5, -2.0]), torch.tensor([-2.5, -1.0])


def loss(kind: str, eps: float = 0.0) -> float:
    return float(dpo_loss(POLICY_W, POLICY_L, REF_W, REF_L, beta=0.5, loss_type=kind, label_smoothing=eps).loss)


def test_sigmoid_is_negative_log_sigmoid_of_beta_h():
    # mean(softplus(-0.5), softplus(-0.25)) = mean(0.474077, 0.575939)
    assert loss("sigmoid") == pytest.approx(0.5250082, abs=1e-6)


def test_cdpo_mixes_both_labels():
    # mean(0.9·softplus(-βh) + 0.1·softplus(βh))
    assert loss("sigmoid", eps=0.1) == pytest.approx(0.5625082, abs=1e-6)


def test_ipo_is_squared_distance_to_half_inverse_beta():
    # (h − 1/(2β))² = (1 − 1)², (0.5 − 1)² → mean 0.125
    assert loss("ipo") == pytest.approx(0.125)


def test_hinge():
    # max(0, 1 − βh) = 0.5, 0.75 → mean 0.625
    assert loss("hinge") == pytest.approx(0.625)


def test_robust_debiases_flipped_labels():
    # mean((0.9·softplus(-βh) − 0.1·softplus(βh)) / 0.8)
    assert loss("robust", eps=0.1) == pytest.approx(0.4781332, abs=1e-6)
    assert loss("robust") == pytest.approx(loss("sigmoid"))  # ε = 0: plain DPO


def test_implicit_rewards_and_gradient_direction():
    policy_w, policy_l = POLICY_W.clone().requires_grad_(), POLICY_L.clone().requires_grad_()
    out = dpo_loss(policy_w, policy_l, REF_W, REF_L, beta=0.5)
    torch.testing.assert_close(out.chosen_rewards, torch.tensor([0.25, 0.0]))  # β(π_w − ref_w)
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([-0.25, -0.25]))
    out.loss.backward()
    assert (policy_w.grad < 0).all() and (policy_l.grad > 0).all()  # descent raises chosen, lowers rejected


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="Unknown DPO loss"):
        loss("kto")


def test_ipo_on_summed_logprobs_is_trls_length_averaged_ipo_with_tau_beta_over_length():
    # The docstring's convention: completions of L = 4 tokens, TRL's averaged IPO with β = 0.5 has
    # h_avg = h / 4 = [0.25, 0.125], loss (h_avg − 1)² = [0.5625, 0.765625]; ours with τ = β/L = 0.125
    # has (h − 4)² = (1 − 4)², (0.5 − 4)² = [9, 12.25] = L² × TRL's.
    length = 4
    ours = dpo_loss(POLICY_W, POLICY_L, REF_W, REF_L, beta=0.5 / length, loss_type="ipo").losses
    trl = dpo_loss(POLICY_W / length, POLICY_L / length, REF_W / length, REF_L / length, beta=0.5, loss_type="ipo")
    torch.testing.assert_close(trl.losses, torch.tensor([0.5625, 0.765625]))
    torch.testing.assert_close(ours, torch.tensor([9.0, 12.25]))
    torch.testing.assert_close(ours, length**2 * trl.losses)


def test_rpo_adds_alpha_times_per_token_nll_of_chosen():
    # Pang et al. 2024, eq. 1: L = L_DPO + α·(−log π(y_w|x))/|y_w|. With |y_w| = [2, 4] and α = 1:
    # NLL/|y_w| = [1.0/2, 2.0/4] = [0.5, 0.5]; L_DPO = [softplus(-0.5), softplus(-0.25)] = [0.474077, 0.575939].
    lengths = torch.tensor([2, 4])
    out = dpo_loss(POLICY_W, POLICY_L, REF_W, REF_L, beta=0.5, nll_weight=1.0, chosen_lengths=lengths)
    torch.testing.assert_close(out.chosen_nll, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out.losses, torch.tensor([0.974077, 1.075939]), atol=1e-6, rtol=0)
    plain = dpo_loss(POLICY_W, POLICY_L, REF_W, REF_L, beta=0.5, chosen_lengths=lengths)  # α = 0: DPO alone
    assert float(plain.loss) == pytest.approx(0.5250082, abs=1e-6)
    torch.testing.assert_close(plain.chosen_nll, out.chosen_nll)  # logged either way


def test_rpo_term_pulls_the_chosen_likelihood_up_where_dpo_alone_lets_it_fall():
    # Likelihood displacement: DPO's gradient on log π(y_w) is −β·σ(−βh), which vanishes as h grows; the NLL
    # term adds a constant −α/|y_w| per pair, so descent keeps raising the chosen reply's log-prob.
    policy_w = torch.tensor([-1.0, -2.0], requires_grad=True)
    policy_l = torch.tensor([-30.0, -30.0])  # rejected already far below: h ≈ 29, DPO's push ≈ 0
    lengths = torch.tensor([2, 4])
    dpo_loss(policy_w, policy_l, REF_W, REF_L, beta=0.5).loss.backward()
    dpo_grad = policy_w.grad.clone()
    policy_w.grad = None
    dpo_loss(policy_w, policy_l, REF_W, REF_L, beta=0.5, nll_weight=1.0, chosen_lengths=lengths).loss.backward()
    assert dpo_grad.abs().max() < 1e-5
    torch.testing.assert_close(policy_w.grad - dpo_grad, torch.tensor([-0.5 / 2, -0.5 / 4]))  # mean over B = 2


def test_negative_nll_weight_is_refused():
    with pytest.raises(ValueError, match="nll_weight"):
        dpo_loss(POLICY_W, POLICY_L, REF_W, REF_L, nll_weight=-1.0)
