"""The top-k teacher's divergence (the tail as one bucket) against its formula and against the full one.

Worked out with a calculator, teacher P = [0.5, 0.3, 0.2], student Q = [0.2, 0.3, 0.5], K = {token 0}:
the buckets are P̃ = [0.5, 0.5], Q̃ = [0.2, 0.8], so
  KL(P̃‖Q̃) = 0.5·ln(0.5/0.2) + 0.5·ln(0.5/0.8) = 0.458145 − 0.235002 = 0.223144
  KL(Q̃‖P̃) = 0.2·ln(0.2/0.5) + 0.8·ln(0.8/0.5) = −0.183258 + 0.376003 = 0.192745
against the full KL(P‖Q) = 0.5·ln 2.5 + 0.3·ln 1 + 0.2·ln 0.4 = 0.274887 (merging outcomes loses information).
"""

import pytest
import torch

from minigpt.losses.distill import token_divergence, topk_token_divergence

P = torch.tensor([[0.5, 0.3, 0.2]])
Q = torch.tensor([[0.2, 0.3, 0.5]])


def topk_teacher(teacher_logits: torch.Tensor, k: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, log-probs with the tail's log-mass last) of the teacher's top k at `temperature`."""
    log_p = torch.log_softmax(teacher_logits / temperature, dim=-1)
    top, indices = log_p.topk(k, dim=-1)
    tail = log_p.scatter(-1, indices, float("-inf")).logsumexp(dim=-1, keepdim=True)
    return indices, torch.cat([top, tail], dim=-1)


def test_the_tail_bucket_equals_the_worked_example():
    indices, log_probs = topk_teacher(P.log(), k=1)
    assert indices.tolist() == [[0]]
    assert float(topk_token_divergence(Q.log(), indices, log_probs, "fkl")) == pytest.approx(0.223144, abs=1e-6)
    assert float(topk_token_divergence(Q.log(), indices, log_probs, "rkl")) == pytest.approx(0.192745, abs=1e-6)
    assert float(token_divergence(Q.log(), P.log(), "fkl")) == pytest.approx(0.274887, abs=1e-6)
    # k = V − 1: the tail is one token, so nothing is merged and the divergence is the full one.
    indices, log_probs = topk_teacher(P.log(), k=2)
    assert float(topk_token_divergence(Q.log(), indices, log_probs, "fkl")) == pytest.approx(0.274887, abs=1e-6)


@pytest.mark.parametrize(("kind", "beta"), [("fkl", 0.5), ("rkl", 0.5), ("jsd", 0.5), ("jsd", 0.1)])
def test_with_k_equal_to_the_vocabulary_the_loss_and_its_gradient_are_the_full_ones(kind, beta):
    torch.manual_seed(0)
    teacher, student = 3 * torch.randn(2, 5, 11), torch.randn(2, 5, 11, requires_grad=True)
    indices, log_probs = topk_teacher(teacher, k=11, temperature=2.0)  # every token, in the teacher's order
    assert torch.isinf(log_probs[..., -1]).all()  # no tail left
    full = token_divergence(student, teacher, kind, 2.0, beta)
    (full_grad,) = torch.autograd.grad(full.sum(), student)
    cached = topk_token_divergence(student, indices, log_probs, kind, 2.0, beta)
    (cached_grad,) = torch.autograd.grad(cached.sum(), student)
    torch.testing.assert_close(cached, full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cached_grad, full_grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["fkl", "rkl", "jsd"])
def test_a_truncated_teacher_gives_a_lower_bound_that_tightens_with_k(kind):
    torch.manual_seed(1)
    teacher, student = 3 * torch.randn(64, 20), torch.randn(64, 20)
    full = token_divergence(student, teacher, kind)
    previous = torch.zeros(64)
    for k in (1, 4, 8, 19):
        indices, log_probs = topk_teacher(teacher, k)
        value = topk_token_divergence(student, indices, log_probs, kind)
        assert (value <= full + 1e-6).all() and (value >= previous - 1e-6).all()  # data processing, nested K
        previous = value
    torch.testing.assert_close(previous, full, atol=1e-5, rtol=1e-5)  # k = V − 1 is exact


def test_mismatched_shapes_and_k_out_of_range_are_refused():
    indices, log_probs = topk_teacher(P.log(), k=2)
    with pytest.raises(ValueError, match=r"k \+ 1"):
        topk_token_divergence(Q.log(), indices, log_probs[..., :2])
    with pytest.raises(ValueError, match="k must be"):
        topk_token_divergence(Q.log(), torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 5))
