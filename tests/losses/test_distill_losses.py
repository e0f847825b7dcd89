"""Distillation losses equal their formulas on hand-checked distributions (Hinton 2015, MiniLLM 2023, GKD 2023).

Teacher P = [1/2, 1/2], student Q = [1/4, 3/4]; the logits are the log-probabilities, so softmax gives
P and Q back exactly. Worked out with a calculator:
  KL(P‖Q) = ½·ln(0.5/0.25) + ½·ln(0.5/0.75) = 0.346574 − 0.202733 = 0.143841
  KL(Q‖P) = ¼·ln(0.25/0.5) + ¾·ln(0.75/0.5) = −0.173287 + 0.304099 = 0.130812
  JSD(½): M = [0.375, 0.625]; KL(P‖M) = 0.032269, KL(Q‖M) = 0.035375 → ½·(0.032269 + 0.035375) = 0.033822
  JSD(¼): M = ¼P + ¾Q = [0.3125, 0.6875]; ¼·KL(P‖M) + ¾·KL(Q‖M) = 0.026048
  T = 2: P_T ∝ √P = [½, ½], Q_T ∝ √Q = [0.366025, 0.633975]; KL(P_T‖Q_T) = 0.037252, × T² = 0.149009
"""

import math

import pytest
import torch

from minigpt.losses.distill import distillation_loss, token_divergence
from minigpt.losses.lm import IGNORE_INDEX

P = torch.tensor([0.5, 0.5])
Q = torch.tensor([0.25, 0.75])
TEACHER = P.log().view(1, 1, 2)
STUDENT = Q.log().view(1, 1, 2)


def divergence(kind: str, temperature: float = 1.0, beta: float = 0.5) -> float:
    return float(token_divergence(STUDENT, TEACHER, kind, temperature, beta))  # type: ignore[arg-type]


def test_forward_and_reverse_kl_equal_their_formulas():
    assert divergence("fkl") == pytest.approx(0.143841, abs=1e-6)
    assert divergence("rkl") == pytest.approx(0.130812, abs=1e-6)


def test_generalised_jsd_equals_its_formula():
    assert divergence("jsd", beta=0.5) == pytest.approx(0.033822, abs=1e-6)
    assert divergence("jsd", beta=0.25) == pytest.approx(0.026048, abs=1e-6)
    assert divergence("jsd", beta=0.5) <= math.log(2)  # the symmetric JSD is bounded by ln 2


def test_jsd_limits_are_forward_kl_near_zero_and_reverse_kl_near_one():
    # JSD(β) ≈ β·KL(P‖Q) for small β and ≈ (1 − β)·KL(Q‖P) for β near 1 (GKD §3); β = 0, 1 name those limits.
    # The next term is O(β²), so the ratio's error shrinks with β (float32 round-off dominates below 1e-3).
    for eps, tol in ((1e-2, 2e-2), (1e-3, 2e-3)):
        assert divergence("jsd", beta=eps) / eps == pytest.approx(divergence("fkl"), rel=tol)
        assert divergence("jsd", beta=1 - eps) / eps == pytest.approx(divergence("rkl"), rel=tol)
    assert divergence("jsd", beta=0.0) == divergence("fkl")
    assert divergence("jsd", beta=1.0) == divergence("rkl")


def test_temperature_softens_both_and_t_squared_scales_the_soft_term():
    assert divergence("fkl", temperature=2.0) == pytest.approx(0.037252, abs=1e-6)
    out = distillation_loss(STUDENT, TEACHER, torch.tensor([[1]]), "fkl", temperature=2.0, alpha=1.0)
    assert float(out.loss) == pytest.approx(4 * 0.037252, abs=1e-5)
    assert float(out.divergence) == pytest.approx(0.037252, abs=1e-6)  # logged unscaled


def test_t_squared_keeps_the_gradient_size_hinton():
    # Hinton §2: ∂KL(P_T‖Q_T)/∂z = (Q_T − P_T)/T, so with the T² factor the gradient is T·(Q_T − P_T).
    student = STUDENT.clone().requires_grad_()
    distillation_loss(student, TEACHER, torch.tensor([[1]]), "fkl", temperature=2.0).loss.backward()
    q_t = torch.tensor([0.366025, 0.633975])
    torch.testing.assert_close(student.grad.view(2), 2.0 * (q_t - P), atol=1e-5, rtol=0)


def test_alpha_mixes_soft_and_hard_label_losses():
    # α·KL + (1 − α)·CE with the target token 1: CE = −ln 0.75 = 0.287682 → ½·0.143841 + ½·0.287682
    out = distillation_loss(STUDENT, TEACHER, torch.tensor([[1]]), "fkl", alpha=0.5)
    assert float(out.loss) == pytest.approx(0.215762, abs=1e-6)
    assert float(out.hard) == pytest.approx(0.287682, abs=1e-6)
    pure_hard = distillation_loss(STUDENT, TEACHER, torch.tensor([[1]]), "fkl", alpha=0.0)
    assert float(pure_hard.loss) == pytest.approx(0.287682, abs=1e-6)


def test_only_scored_tokens_count():
    # Position 0 (a prompt token on SFT data) has a very different teacher; its target is ignored.
    teacher = torch.stack([torch.tensor([10.0, -10.0]), P.log()]).view(1, 2, 2)
    student = torch.stack([Q.log(), Q.log()]).view(1, 2, 2)
    targets = torch.tensor([[IGNORE_INDEX, 1]])
    for kind, value in (("fkl", 0.143841), ("rkl", 0.130812), ("jsd", 0.033822)):
        out = distillation_loss(student, teacher, targets, kind, alpha=1.0)  # type: ignore[arg-type]
        assert float(out.loss) == pytest.approx(value, abs=1e-6)


def test_every_divergence_vanishes_when_student_equals_teacher():
    logits = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(1))
    for kind in ("fkl", "rkl", "jsd"):
        student = logits.clone().requires_grad_()
        out = distillation_loss(student, logits, targets, kind, temperature=2.0)  # type: ignore[arg-type]
        assert float(out.loss.detach()) == pytest.approx(0.0, abs=1e-6)
        out.loss.backward()
        assert student.grad.abs().max() < 1e-6


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Unknown distillation loss"):
        divergence("tvd")
    with pytest.raises(ValueError, match="same positions and vocabulary"):
        token_divergence(STUDENT, torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(STUDENT, TEACHER, torch.tensor([[1]]), alpha=1.5)
    with pytest.raises(ValueError, match="jsd_beta"):
        divergence("jsd", beta=1.5)
