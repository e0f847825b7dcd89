"""Reward-model loss: the Bradley–Terry likelihood of human (or gold-scorer) preferences.

Bradley & Terry (1952), as used for reward models by Ouyang et al. 2022 (InstructGPT, eq. 1): the
probability that y_w is preferred to y_l is σ(r(x, y_w) − r(x, y_l)), so the loss is

    L = −log σ(r_w − r_l − m)

where m is an optional *margin* (Llama 2, Touvron et al. 2023, §3.2.2, eq. 2): pairs whose preference
is clearer (a larger gold-score difference) must be separated by more. Rewards are only defined up to a
constant under Bradley–Terry; *reward centering* (Eisenstein et al. 2023, "Helping or Herding?", §3)
adds η·(r_w + r_l)² so the model's rewards stay centred at 0 and comparable across prompts and runs.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def reward_loss(chosen: Tensor, rejected: Tensor, margin: Tensor | None = None, center_coef: float = 0.0) -> Tensor:
    """Mean of −log σ(r_w − r_l − m) + η·(r_w + r_l)² over the batch.

    Args:
        chosen, rejected: (B,) scalar rewards of the chosen and rejected completions.
        margin: (B,) m per pair, or None for no margin.
        center_coef: η, the weight of the centering term (0 = off).
    """
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss
