"""The GRPO family: critic-free policy gradients that compare G replies to the same prompt.

GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, eq. 3) samples a *group* of G replies
o₁ … o_G to each prompt q and replaces PPO's learned value baseline by the group's own rewards:

    Âᵢ,ₜ = (rᵢ − mean(r₁…r_G)) / std(r₁…r_G)                      (outcome supervision, §4.1.2)

    J(θ) = E[ 1/G Σᵢ 1/|oᵢ| Σₜ { min(ρᵢ,ₜ Âᵢ,ₜ, clip(ρᵢ,ₜ, 1 − ε, 1 + ε) Âᵢ,ₜ) − β D_KL[π_θ ‖ π_ref] } ]

with ρᵢ,ₜ = π_θ(oᵢ,ₜ | q, oᵢ,<t) / π_old(oᵢ,ₜ | q, oᵢ,<t) and the per-token k3 estimator of the KL
(eq. 4): D = π_ref/π_θ − log(π_ref/π_θ) − 1, non-negative and unbiased. No value model: two networks
(policy and reference), or one when β = 0.

The fixes that followed, each a switch here:

* **Dr. GRPO** (Liu et al. 2025, "Understanding R1-Zero-Like Training", arXiv 2503.20783, §3.1):
  the 1/|oᵢ| factor makes a wrong reply's per-token penalty smaller the longer it is (so wrong
  answers grow), and dividing by std(r) up-weights prompts that are almost always right or wrong.
  Drop both: no std (`scale_rewards="none"`), and a constant normaliser (`loss_type="dr_grpo"`:
  Σ tokens / (B · L_max)).
* **DAPO** (Yu et al. 2025, arXiv 2503.14476): clip-higher, a larger upper bound 1 + ε_high so that
  unlikely tokens can still grow (§3.1, eq. 10); token-level normalisation over all the batch's tokens
  (`loss_type="dapo"`, §3.3, eq. 12); dynamic sampling, keeping only groups whose rewards differ —
  a group that is all right or all wrong has zero advantages and teaches nothing (§3.2, eq. 11); and
  a soft overlong penalty (§3.4, eq. 13).
* **RLOO** (Ahmadian et al. 2024, "Back to Basics", arXiv 2402.14740, eq. 6): each reply's baseline
  is the mean of the *other* G − 1 rewards, an unbiased baseline: Aᵢ = rᵢ − 1/(G−1) Σ_{j≠i} r_j.
* **REINFORCE++** (Hu 2025, arXiv 2501.03262, the group-baseline variant): subtract the group mean,
  then normalise by the mean and std of those advantages over the whole *batch*, which is steadier
  than a per-group std when a group's rewards barely differ.

Shapes: as in `minigpt.losses.ppo`, token tensors are in *response space* (N, L) with `mask` True on
real reply tokens; a batch of N = n_prompts · G rows holds each prompt's G replies as contiguous rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from minigpt.losses.ppo import kl_per_token

AdvantageKind = Literal["grpo", "rloo", "reinforce_pp"]
RewardScale = Literal["group", "batch", "none"]
LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]

ADVANTAGES: tuple[str, ...] = ("grpo", "rloo", "reinforce_pp")
REWARD_SCALES: tuple[str, ...] = ("group", "batch", "none")
LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo")
# Each advantage's own scale, as its paper uses it (`scale_rewards: null` picks it).
DEFAULT_SCALE: dict[str, str] = {"grpo": "group", "rloo": "none", "reinforce_pp": "batch"}


def grouped(rewards: Tensor, num_generations: int) -> Tensor:
    """(N,) rewards → (N / G, G): one row per prompt, its G replies being contiguous rows of the batch."""
    if rewards.ndim != 1 or rewards.numel() % num_generations:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {num_generations}.")
    return rewards.view(-1, num_generations)


def group_advantages(
    rewards: Tensor,
    num_generations: int,
    advantage: AdvantageKind = "grpo",
    scale_rewards: RewardScale | None = None,
    eps: float = 1e-4,
) -> Tensor:
    """One advantage per reply (N,) from the rewards of groups of G replies to the same prompt.

    The baseline (what is subtracted) comes from `advantage`:
        grpo, reinforce_pp:  bᵢ = mean_g(r)                      (DeepSeekMath §4.1.2; REINFORCE++)
        rloo:                bᵢ = (Σ_g r − rᵢ) / (G − 1)          (RLOO eq. 6), i.e. G/(G−1)·(rᵢ − mean_g r)
    The scale (what it is divided by) from `scale_rewards` (None = the advantage's own, `DEFAULT_SCALE`):
        group:  std_g(r) + eps, the sample std of the reply's group     (GRPO)
        batch:  A ← (A − mean_batch A) / (std_batch A + eps)           (REINFORCE++'s global normalisation)
        none:   nothing                                                (Dr. GRPO; RLOO)
    Where we depart from TRL: its `scale_rewards="batch"` divides by the std of the raw rewards over
    the batch; we whiten the baselined advantages (REINFORCE++'s formula), whose std leaves out the
    spread *between* prompts, which the group baseline has already removed.
    `eps` (1e-4 as in TRL) keeps a group whose rewards are all equal at advantage 0 instead of 0/0.
    """
    if advantage not in ADVANTAGES:
        raise ValueError(f"Unknown advantage {advantage!r}; use one of {ADVANTAGES}.")
    scale = DEFAULT_SCALE[advantage] if scale_rewards is None else scale_rewards
    if scale not in REWARD_SCALES:
        raise ValueError(f"Unknown reward scale {scale!r}; use one of {REWARD_SCALES}.")
    groups = grouped(rewards.float(), num_generations)  # (N/G, G)
    size = groups.shape[1]
    mean = groups.mean(dim=1, keepdim=True)
    if advantage == "rloo":
        centred = (groups * size - groups.sum(dim=1, keepdim=True)) / (size - 1)  # rᵢ − mean of the others
    else:
        centred = groups - mean
    if scale == "group":
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        centred = (centred - centred.mean()) / (centred.std() + eps)
    return centred.reshape(-1)


def informative_groups(rewards: Tensor, num_generations: int) -> Tensor:
    """(N / G,) True for the groups whose rewards are not all equal (DAPO's dynamic sampling, eq. 11).

    A group that is all right (or all wrong) has zero advantage on every reply: it costs a forward and
    backward pass and moves nothing. `frac_reward_zero_std` = 1 − this mask's mean.
    """
    groups = grouped(rewards, num_generations)
    return groups.amax(dim=1) > groups.amin(dim=1)


def overlong_penalty(lengths: Tensor, max_length: int, cache: int) -> Tensor:
    """DAPO's soft overlong punishment (eq. 13), added to the reward of each reply of `lengths` tokens:

        0                               if |y| ≤ L_max − L_cache
        ((L_max − L_cache) − |y|) / L_cache   if L_max − L_cache < |y| ≤ L_max
        −1                              if |y| > L_max

    A ramp from 0 to −1 over the last `cache` tokens, so the policy learns to finish before the
    limit, rather than the cliff of a reply cut off and scored as wrong.
    """
    if not 0 < cache <= max_length:
        raise ValueError(f"The overlong cache {cache} must be in (0, max_length={max_length}].")
    start = max_length - cache
    ramp = (start - lengths.float()) / cache
    return torch.where(lengths <= start, torch.zeros_like(ramp), ramp.clamp(min=-1.0))


@dataclass
class GRPOLossOutput:
    """The loss to minimise and its diagnostics (scalars, means over the loss's active tokens)."""

    loss: Tensor
    policy_loss: Tensor  # the clipped surrogate part, normalised like the loss
    kl: Tensor  # mean k3 KL to the reference per token (0 when β = 0)
    clip_low: Tensor  # share of tokens clipped at 1 − ε (ratio below it, advantage < 0)
    clip_high: Tensor  # share of tokens clipped at 1 + ε_high (ratio above it, advantage > 0)


def normalise_tokens(
    per_token: Tensor, mask: Tensor, loss_type: LossType, max_length: int | None = None, num_tokens: float | None = None
) -> Tensor:
    """Reduce a per-token loss (N, L) to a scalar with one of the four normalisations:

        grpo:     1/N Σᵢ 1/|oᵢ| Σₜ ℓᵢ,ₜ       per-reply mean, then mean over replies (DeepSeekMath eq. 3)
        bnpo:     Σᵢ,ₜ ℓᵢ,ₜ / Σᵢ |oᵢ|          mean over the active tokens of this batch
        dr_grpo:  Σᵢ,ₜ ℓᵢ,ₜ / (N · L_max)      a constant: no length bias (Dr. GRPO §3.1)
        dapo:     Σᵢ,ₜ ℓᵢ,ₜ / T_acc            T_acc = active tokens in the whole accumulated batch
                                              (DAPO eq. 12); `num_tokens`, or this batch's count
    `max_length` is L_max (the longest reply allowed: `max_new_tokens`), needed by dr_grpo. Under
    gradient accumulation dapo's `num_tokens` counts every micro-batch's tokens, so the summed
    gradients equal one pass over the whole batch; the other three are per-batch means.
    """
    mask = mask.to(per_token.dtype)
    total = (per_token * mask).sum()
    if loss_type == "grpo":
        return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    if loss_type == "bnpo":
        return total / mask.sum().clamp(min=1)
    if loss_type == "dr_grpo":
        if not max_length:
            raise ValueError("loss_type='dr_grpo' needs max_length (the longest reply allowed).")
        return total / (per_token.shape[0] * max_length)
    if loss_type == "dapo":
        return total / (num_tokens if num_tokens else mask.sum().clamp(min=1))
    raise ValueError(f"Unknown loss_type {loss_type!r}; use one of {LOSS_TYPES}.")


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    ref_logprobs: Tensor | None = None,
    loss_type: LossType = "grpo",
    max_length: int | None = None,
    num_tokens: float | None = None,
) -> GRPOLossOutput:
    """The clipped surrogate with a per-reply advantage and a k3 KL penalty (DeepSeekMath eq. 3), as a loss:

        ℓᵢ,ₜ = −min(ρᵢ,ₜ Âᵢ, clip(ρᵢ,ₜ, 1 − ε, 1 + ε_high) Âᵢ) + β · [π_ref/π − log(π_ref/π) − 1]

    then reduced by `normalise_tokens(loss_type)`.

    Args:
        logprobs: (N, L) log π_θ of the reply tokens (with gradients); old_logprobs: π_old's, detached.
            With one update per rollout (μ = 1) pass `logprobs.detach()`: ρ = 1, the gradient is Â∇log π.
        advantages: (N,) one per reply (`group_advantages`), broadcast over its tokens.
        mask: (N, L) the tokens that count (real reply tokens, minus any masked overlong replies).
        epsilon, epsilon_high: the ratio's clip range [1 − ε, 1 + ε_high]; ε_high = None means ε
            (DAPO's clip-higher uses ε = 0.2, ε_high = 0.28).
        beta, ref_logprobs: the KL coefficient and the reference's log-probs (ignored when β = 0).
    """
    high = epsilon if epsilon_high is None else epsilon_high
    adv = advantages.unsqueeze(1).to(logprobs.dtype)  # (N, 1)
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - epsilon, 1.0 + high) * adv)
    policy = normalise_tokens(-surrogate, mask, loss_type, max_length, num_tokens)
    kl = torch.zeros_like(logprobs)
    loss = policy
    if beta:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs.")
        kl = kl_per_token(logprobs, ref_logprobs, "k3")  # eq. 4: e^{ref − logp} − (ref − logp) − 1
        loss = policy + beta * normalise_tokens(kl, mask, loss_type, max_length, num_tokens)
    with torch.no_grad():
        m = mask.float()
        count = m.sum().clamp(min=1)
        clip_low = (((ratio < 1.0 - epsilon) & (adv < 0)).float() * m).sum() / count
        clip_high = (((ratio > 1.0 + high) & (adv > 0)).float() * m).sum() / count
        mean_kl = (kl.detach() * m).sum() / count
    return GRPOLossOutput(loss, policy.detach(), mean_kl, clip_low, clip_high)
