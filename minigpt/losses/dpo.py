"""Direct preference optimisation losses: learn from (chosen, rejected) pairs without a reward model.

All variants see the same quantity, the difference of the policy's and the reference's log-ratios

    h = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)]

with y_w the chosen and y_l the rejected completion (sequence log-probs over completion tokens, see
`minigpt.losses.logprobs`). β·(log π − log π_ref) is DPO's *implicit reward* (Rafailov et al. 2023,
eq. 5), so β·h is the implicit reward margin; the variants differ in what they do with it:

* `sigmoid` — DPO (Rafailov et al. 2023, eq. 7): L = −log σ(β·h), the Bradley–Terry likelihood of the
  preference under the implicit reward. With label smoothing ε (conservative DPO, Mitchell 2023: a
  label is flipped with probability ε): L = −(1−ε)·log σ(β·h) − ε·log σ(−β·h).
* `ipo` — IPO (Azar et al. 2023, eq. 17): L = (h − 1/(2τ))², τ = β. A squared loss towards a finite
  margin, so it does not push h to infinity on deterministic preferences, which sigmoid DPO does.
  Convention: h is made of *sequence* (summed) log-probs, as in the paper's eq. 17 and as for every
  other variant here. TRL departs from the paper and averages IPO's log-probs over the completion's
  tokens, so its β is on another scale: with both completions n tokens long, h = n·h_avg and
  (h − 1/(2τ))² = n²·(h_avg − 1/(2τn))², so TRL's β corresponds to τ = β_TRL / n here. To reproduce TRL exactly,
  pass length-averaged log-probs (the loss uses whatever log-probs it is given).
* `hinge` — SLiC-HF (Zhao et al. 2023, the rank-calibration hinge of §2): L = max(0, 1 − β·h).
* `robust` — robust DPO (Chowdhury et al. 2024, §3, the debiased loss): an unbiased loss under labels flipped with
  known rate ε: L = [(1−ε)·(−log σ(β·h)) − ε·(−log σ(−β·h))] / (1 − 2ε).

Any variant can add RPO's NLL term (Pang et al. 2024, "Iterative Reasoning Preference Optimization",
arXiv:2404.19733, eq. 1): L_RPO = L_DPO + α · (−log π(y_w|x)) / |y_w|, the chosen reply's negative
log-likelihood per token. DPO's loss depends only on the *difference* h, so it can lower log π(y_w|x)
as long as log π(y_l|x) falls faster ("likelihood displacement"; Pal et al. 2024, arXiv:2402.13228, §3):
on near-identical pairs (`81` vs `82`) the shared tokens' probability drains away with both. The NLL term
is plain SFT on the chosen replies and pulls their likelihood back up; α = 0 is the variant alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

DPOLossType = Literal["sigmoid", "ipo", "hinge", "robust"]
LOSS_TYPES: tuple[str, ...] = ("sigmoid", "ipo", "hinge", "robust")


@dataclass
class DPOOutput:
    """Per-pair loss (B,), the implicit rewards β·(log π − log π_ref) of chosen and rejected (B,), and
    the chosen replies' per-token NLL −log π(y_w|x)/|y_w| (B,; detached, logged whether or not it is trained)."""

    losses: Tensor
    chosen_rewards: Tensor
    rejected_rewards: Tensor
    chosen_nll: Tensor

    @property
    def loss(self) -> Tensor:
        """The batch mean of the losses."""
        return self.losses.mean()


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    reference_chosen: Tensor,
    reference_rejected: Tensor,
    beta: float = 0.1,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
    nll_weight: float = 0.0,
    chosen_lengths: Tensor | None = None,
) -> DPOOutput:
    """The DPO-family loss of a batch of pairs (see the module docstring for each formula).

    Args:
        policy_chosen, policy_rejected: (B,) sequence log-probs of the completions under the policy.
        reference_chosen, reference_rejected: (B,) the same under the frozen reference (no gradient).
        beta: β, the strength of the implicit KL constraint to the reference (IPO's τ).
        loss_type: `sigmoid`, `ipo`, `hinge` or `robust`.
        label_smoothing: ε, the assumed rate of flipped labels (`sigmoid`: cDPO; `robust`: < 0.5).
        nll_weight: α of RPO's term α·(−log π(y_w|x))/|y_w| (Pang et al. 2024, eq. 1); 0 = the variant alone.
        chosen_lengths: (B,) |y_w|, the chosen replies' token counts (default: 1, i.e. summed NLL).
    """
    chosen_ratio = policy_chosen - reference_chosen
    rejected_ratio = policy_rejected - reference_rejected
    h = chosen_ratio - rejected_ratio
    eps = label_smoothing
    if loss_type == "sigmoid":
        losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = F.relu(1 - beta * h)
    elif loss_type == "robust":
        if not 0 <= eps < 0.5:
            raise ValueError(f"robust DPO needs 0 ≤ label_smoothing < 0.5, got {eps}.")
        losses = (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
    else:
        raise ValueError(f"Unknown DPO loss {loss_type!r}; use one of {list(LOSS_TYPES)}.")
    if nll_weight < 0:
        raise ValueError(f"nll_weight must be ≥ 0, got {nll_weight}.")
    lengths = chosen_lengths.clamp(min=1).to(policy_chosen) if chosen_lengths is not None else 1.0
    nll = -policy_chosen / lengths  # RPO's per-token NLL of the chosen reply (Pang et al. 2024, eq. 1)
    if nll_weight > 0:
        losses = losses + nll_weight * nll
    return DPOOutput(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach(), nll.detach())
