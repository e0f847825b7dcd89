"""PPO for language models: per-token rewards with a KL penalty, GAE, and the clipped losses.

The RLHF view of generation (Ziegler et al. 2019; Ouyang et al. 2022 §3.5): the prompt is the first
state, each reply token yₜ is an action, the state after it is everything generated so far. The
environment pays nothing until the reply ends, then the reward model's (or a gold scorer's) score. A
KL penalty to the frozen reference π_ref is paid at every token:

    rₜ = −β · KLₜ            + [t = last] · score

so the return of a reply is score − β·KL(π‖π_ref) summed over its tokens, which keeps the policy near
the distribution the reward model was trained on (Stiennon et al. 2020, eq. 2).

Shapes: every tensor here is in *response space*, (B, L): row b's reply tokens at columns 0…len_b − 1,
then padding; `mask` (B, L) is True on real reply tokens. All means over tokens are masked means over
the whole batch (each real token weighs the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

KLEstimator = Literal["k1", "k3"]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of `x` over the True entries of `mask` (0 if there are none)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: Tensor, mask: Tensor) -> Tensor:
    """Variance of `x` over the True entries of `mask` (population variance)."""
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x − mean) / std over the masked entries, 0 on padding; `shift_mean=False` keeps the mean.

    Advantage normalisation (PPO-max, Zheng et al. 2023 §5.3): the scale of advantages then does not
    depend on the reward's scale, so one learning rate fits every reward.

    Convention: std is the *population* standard deviation of the batch's real tokens (divide by n), so
    the result has exactly mean 0 and variance 1 over them: the batch is normalised as it is, not used
    to estimate a wider population. TRL's `masked_whiten` divides by the Bessel-corrected (n − 1)
    variance, which scales the result by √((n − 1)/n): under 0.1% apart once a batch holds 500 tokens.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_per_token(logprobs: Tensor, ref_logprobs: Tensor, estimator: KLEstimator = "k1") -> Tensor:
    """A per-token estimate of KL(π ‖ π_ref) at the sampled tokens yₜ ~ π (Schulman 2020, "Approximating KL").

    With log-ratio ℓ = log π(yₜ) − log π_ref(yₜ):
    * k1 = ℓ, unbiased, but single samples can be negative;
    * k3 = (e^{−ℓ} − 1) + ℓ, also unbiased, and never negative (lower variance when π ≈ π_ref).
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"Unknown KL estimator {estimator!r}; use k1 or k3.")


def token_rewards(scores: Tensor, kl: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """rₜ = −β·KLₜ on every reply token, plus the sequence's score on its last token: (B, L).

    Args:
        scores: (B,) one score per reply (reward model or gold scorer, after any normalisation).
        kl: (B, L) per-token KL estimates; mask: (B, L) real reply tokens (each row has ≥ 1).
    """
    rewards = -kl_coef * kl * mask
    last = (mask.sum(dim=1) - 1).clamp(min=0).long()  # (B,) index of each reply's last token
    return rewards.scatter_add(1, last.unsqueeze(1), scores.unsqueeze(1).to(rewards.dtype))


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eqs. 11–16): advantages and returns (B, L).

        δₜ = rₜ + γ·V(s_{t+1}) − V(sₜ)          (V after the last token is 0: the episode ends)
        Âₜ = δₜ + γλ·Â_{t+1} = Σ_k (γλ)^k δ_{t+k}
        Rₜ = Âₜ + V(sₜ)                         (the value target, a TD(λ) return)

    λ trades bias (λ = 0: one-step TD, trusts V) against variance (λ = 1: Monte-Carlo returns). Padding
    after a reply contributes nothing: its values and advantages are masked to 0.
    """
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * mask[:, t]
        next_value, next_advantage = values[:, t], advantages[:, t]
    return advantages, (advantages + values) * mask


@dataclass
class PolicyLossOutput:
    """The clipped surrogate loss and its diagnostics (all scalars)."""

    loss: Tensor
    clip_fraction: Tensor  # share of tokens whose ratio left [1 − ε, 1 + ε]
    approx_kl: Tensor  # k3 estimate of KL(π_old ‖ π_new): how far this update moved the policy


def policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip: float
) -> PolicyLossOutput:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise:

        ρₜ = π(yₜ) / π_old(yₜ),   L = −mean_t min(ρₜ·Âₜ, clip(ρₜ, 1 − ε, 1 + ε)·Âₜ)

    The min makes the objective a pessimistic bound: a token whose ratio already moved past 1 ± ε in
    the direction its advantage favours earns no further gradient, so one batch of experience can be
    reused for several epochs without the policy running away from where it was sampled.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = -masked_mean(torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip).float(), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return PolicyLossOutput(loss, clip_fraction, approx_kl)


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float | None
) -> tuple[Tensor, Tensor]:
    """The critic's loss ½·mean (V − R)², with PPO's value clipping (PPO-max keeps it); and the clip fraction.

        V_clip = V_old + clip(V − V_old, −ε_v, ε_v),   L = ½·mean_t max((V − R)², (V_clip − R)²)

    Like the policy's ratio clip, the max stops one batch from moving the value far from the values the
    advantages were computed with. `clip=None` (or 0) gives the plain squared error.
    """
    unclipped = (values - returns) ** 2
    if not clip:
        return 0.5 * masked_mean(unclipped, mask), torch.zeros((), device=values.device)
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask).detach()


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy H = −Σ_v p_v log p_v of each position's next-token distribution: (…, V) → (…)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 − Var(R − V) / Var(R): 1 = the critic predicts returns perfectly, ≤ 0 = no better than a constant."""
    return 1.0 - masked_var(returns - values, mask) / masked_var(returns, mask).clamp(min=1e-8)


class RunningMoments:
    """Running mean and standard deviation of a stream of scalars (Chan et al. 1979's parallel update).

    PPO-max normalises the reward model's scores by their running moments and clips them
    (Zheng et al. 2023 §5.3): the critic then sees targets of a stable scale, whatever the reward model.
    """

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: Tensor) -> None:
        """Fold the values of `x` into the moments."""
        n = x.numel()
        if n == 0:
            return
        batch_mean, batch_var = float(x.float().mean()), float(x.float().var(unbiased=False))
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    @property
    def std(self) -> float:
        """The running standard deviation."""
        return max(self.var, 0.0) ** 0.5

    def normalize(self, x: Tensor, clip: float | None = None, eps: float = 1e-8) -> Tensor:
        """(x − mean) / std, clipped to ±`clip` if given."""
        out = (x - self.mean) / (self.std + eps)
        return out.clamp(-clip, clip) if clip else out

    def state_dict(self) -> dict[str, float]:
        """What a checkpoint stores."""
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore from `state_dict()`."""
        self.mean, self.var, self.count = state["mean"], state["var"], int(state["count"])


class AdaptiveKLController:
    """The KL coefficient β, fixed or adapted towards a target KL (Ziegler et al. 2019, §2.2):

        e = clip(KL / KL_target − 1, −0.2, 0.2),   β ← β · (1 + e · n / horizon)

    with n the number of replies in the batch. Too much KL raises β, too little lowers it.
    """

    def __init__(self, init: float, target: float | None = None, horizon: int = 10000) -> None:
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, kl: float, n: int) -> None:
        """Adapt β after a batch of `n` replies whose mean KL was `kl` (no-op when fixed)."""
        if self.target is None:
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n / self.horizon
