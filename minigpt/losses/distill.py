"""Knowledge-distillation losses: a student learns a frozen teacher's next-token distributions.

At every scored position t the teacher gives a distribution P = softmax(z_T/T) over the vocabulary and
the student Q = softmax(z_S/T), both at temperature T. The losses differ in which divergence D(P, Q)
they take, token by token (`token_divergence`):

* `fkl` — forward KL (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", §2):
  KL(P‖Q) = Σ_v P(v)·(log P(v) − log Q(v)). Mean-seeking: the student must put mass wherever the teacher
  does. Softening with T > 1 exposes the teacher's "dark knowledge" (the ranking of the wrong tokens);
  the gradient of the soft term scales as 1/T², so Hinton multiplies it by T² to keep its size
  comparable to the hard-label term when T changes.
* `rkl` — reverse KL (MiniLLM, Gu et al. 2023, eq. 1): KL(Q‖P) = Σ_v Q(v)·(log Q(v) − log P(v)).
  Mode-seeking: the student may drop teacher modes it cannot represent instead of smearing mass over
  them. Departure from the paper, written down as TRL does: MiniLLM optimises the *sequence-level*
  reverse KL with a policy gradient (its eq. 2–5); here the token-level reverse KL is computed exactly
  over the vocabulary on the given tokens, as GKD does for its on-policy reverse-KL runs — combined
  with student-sampled replies (`stage.on_policy_fraction`) it is a low-variance estimate of the same
  objective's token terms.
* `jsd` — generalised Jensen–Shannon divergence (GKD, Agarwal et al. 2023, eq. 2), with the mixture
  M = β·P + (1 − β)·Q: JSD(β) = β·KL(P‖M) + (1 − β)·KL(Q‖M). Bounded (≤ log 2 at β = 1/2, where it is the
  usual symmetric JSD). For small β, JSD(β) ≈ β·KL(P‖Q) (forward-KL-like); for β near 1,
  JSD(β) ≈ (1 − β)·KL(Q‖P) (reverse-KL-like). The formula itself is 0 at β = 0 and β = 1 (M equals one of
  the two), so, as TRL's `generalized_jsd_loss` does, β = 0 and β = 1 mean those limits' directions:
  forward and reverse KL.

`distillation_loss` averages D over the scored tokens (targets ≠ `IGNORE_INDEX`: on SFT data the reply
tokens only — the prompt is conditioning, not something the student should imitate), multiplies by T²
and mixes it with the hard-label cross-entropy by α (Hinton §2: a weighted average of the two):

    L = α · T² · mean_t D(P_t, Q_t) + (1 − α) · CE(y, softmax(z_S))

The hard term uses T = 1 (the student's real predictions). α = 1 is pure distillation (GKD's setting).

Top-k teachers (`topk_token_divergence`): a cached teacher keeps, per token, only its k most probable
tokens K and the log-mass of the rest, the tail R = V ∖ K (`minigpt.stages.distill_cache`). Storing the
top-k of the teacher's distribution is the usual way to make offline ("sparse") distillation affordable
(Anshumann et al. 2025, "Sparse Logit Sampling", analyse it and its bias). What is done with the missing
tail is our choice, written down: it is kept as one bucket, so both distributions stay normalised over
k + 1 outcomes, P̃ = (P(v₁), …, P(v_k), P(R)) and Q̃ likewise with Q(R) = 1 − Σ_{v∈K} Q(v), and D is taken
between P̃ and Q̃. Merging outcomes can only lose information (the data-processing inequality, which every
f-divergence — both KLs and the JSD — satisfies), so D(P̃, Q̃) ≤ D(P, Q), equal when K is the whole
vocabulary; the student is pulled towards the teacher's top-k probabilities and towards the teacher's
total mass on the rest, but not told how to spread that mass inside it. The alternative of renormalising
P over K alone (dropping the tail) would make the teacher over-confident on K by 1/(1 − P(R)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from minigpt.losses.lm import IGNORE_INDEX, lm_loss

DistillLossType = Literal["fkl", "rkl", "jsd"]
LOSS_TYPES: tuple[str, ...] = ("fkl", "rkl", "jsd")


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p‖q) = Σ_v p(v)·(log p(v) − log q(v)) over the last dimension, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def token_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    loss_type: DistillLossType = "fkl",
    temperature: float = 1.0,
    beta: float = 0.5,
) -> Tensor:
    """D(P_t, Q_t) at every position (B, T) for teacher P and student Q at `temperature` (module doc).

    Args:
        student_logits, teacher_logits: (B, T, V) next-token scores at the same positions, same vocabulary.
        loss_type: `fkl` KL(P‖Q), `rkl` KL(Q‖P), or `jsd` the generalised JSD with weight `beta` on P.
        temperature: T > 0; both distributions are softened by it.
        beta: β ∈ [0, 1] of `jsd` (0 → forward KL, 1 → reverse KL).
    In float32: the differences of log-probabilities that a KL is made of vanish in bf16.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ; "
            "distillation needs the same positions and vocabulary."
        )
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive.")
    log_q = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return _divergence(log_p, log_q, loss_type, beta)


def topk_token_divergence(
    student_logits: Tensor,
    teacher_indices: Tensor,
    teacher_log_probs: Tensor,
    loss_type: DistillLossType = "fkl",
    temperature: float = 1.0,
    beta: float = 0.5,
) -> Tensor:
    """D(P̃, Q̃) per position between a top-k teacher and the student, the tail as one bucket (module doc).

    Args:
        student_logits: (..., V) the student's scores.
        teacher_indices: (..., k) the teacher's k most probable token ids at each position.
        teacher_log_probs: (..., k + 1) the teacher's log-probabilities of those tokens at `temperature`, and
            in the last column the log of its remaining mass 1 − Σ_K P (−inf when k = V: no tail).
        loss_type, temperature, beta: as in `token_divergence`.
    With k = V this equals `token_divergence` on the full logits (the indices only permute the vocabulary).
    """
    vocab, k = student_logits.shape[-1], teacher_indices.shape[-1]
    if teacher_log_probs.shape[-1] != k + 1 or teacher_indices.shape[:-1] != student_logits.shape[:-1]:
        raise ValueError(
            f"A top-k teacher needs indices (..., k) and log-probs (..., k + 1) at the student's positions; got "
            f"{tuple(teacher_indices.shape)}, {tuple(teacher_log_probs.shape)} for {tuple(student_logits.shape)}."
        )
    if not 0 < k <= vocab:
        raise ValueError(f"The top-k teacher keeps k={k} tokens of a vocabulary of {vocab}; k must be in [1, {vocab}].")
    log_q_all = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    indices = teacher_indices.long()
    log_q = log_q_all.gather(-1, indices)
    log_p = teacher_log_probs.float()
    if k < vocab:  # Q(R) = Σ_{v∉K} Q(v), as a log-sum-exp over the vocabulary with K masked out
        log_q_tail = log_q_all.scatter(-1, indices, float("-inf")).logsumexp(dim=-1, keepdim=True)
        log_q = torch.cat([log_q, log_q_tail], dim=-1)
    else:  # K is the whole vocabulary: no tail bucket on either side (its 0·log 0 would be NaN)
        log_p = log_p[..., :k]
    return _divergence(log_p, log_q, loss_type, beta)


def _divergence(log_p: Tensor, log_q: Tensor, loss_type: DistillLossType, beta: float) -> Tensor:
    """D(P, Q) over the last dimension from the teacher's and the student's log-probabilities (module doc)."""
    if loss_type == "fkl" or (loss_type == "jsd" and beta == 0.0):
        return _kl(log_p, log_q)
    if loss_type == "rkl" or (loss_type == "jsd" and beta == 1.0):
        return _kl(log_q, log_p)
    if loss_type != "jsd":
        raise ValueError(f"Unknown distillation loss {loss_type!r}; use one of {list(LOSS_TYPES)}.")
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd_beta={beta} must be in [0, 1].")
    # log M = log(β·P + (1 − β)·Q), as a log-sum-exp so that tiny probabilities do not underflow.
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log1p(-beta)]), dim=0)
    return beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)


@dataclass
class DistillOutput:
    """The mixed loss and its two parts (for logging): the soft term T²·mean D and the hard cross-entropy."""

    loss: Tensor
    divergence: Tensor
    hard: Tensor


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    loss_type: DistillLossType = "fkl",
    temperature: float = 1.0,
    alpha: float = 1.0,
    beta: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
) -> DistillOutput:
    """L = α·T²·mean_t D(P_t, Q_t) + (1 − α)·CE(targets) over the positions whose target is not ignored.

    Args:
        student_logits, teacher_logits: (B, T, V) scores at the same positions.
        targets: (B, T) the next tokens; `ignore_index` where no loss applies (prompt, padding): those
            positions count in neither term. On student-sampled replies the targets are the samples.
        loss_type, temperature, beta: see `token_divergence`.
        alpha: α ∈ [0, 1], the weight of the distillation term (1: no hard-label loss).
    `divergence` is the unscaled mean D (comparable across T); `hard` is the cross-entropy (0, not
    computed, when α = 1).
    """
    per_token = token_divergence(student_logits, teacher_logits, loss_type, temperature, beta)
    return mixed_loss(per_token[targets != ignore_index], student_logits, targets, temperature, alpha, ignore_index)


def mixed_loss(
    divergences: Tensor,
    student_logits: Tensor,
    targets: Tensor,
    temperature: float = 1.0,
    alpha: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> DistillOutput:
    """L = α·T²·mean(divergences) + (1 − α)·CE(targets): `distillation_loss` from D at the scored tokens.

    Args:
        divergences: (N,) D(P_t, Q_t) at the N scored positions (from `token_divergence` on the full
            teacher, or `topk_token_divergence` on a cached top-k one).
        student_logits, targets: (B, T, V) and (B, T), for the hard-label term.
        temperature, alpha: T and α of `distillation_loss`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1].")
    divergence = divergences.sum() / max(divergences.numel(), 1)
    hard = lm_loss(student_logits, targets, ignore_index) if alpha < 1.0 else divergence.new_zeros(())
    loss = alpha * temperature**2 * divergence + (1.0 - alpha) * hard
    return DistillOutput(loss, divergence.detach(), hard.detach())
