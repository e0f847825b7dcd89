"""`stage=pretrain`: next-token prediction on raw text."""

from __future__ import annotations

from minigpt.stages.base import Stage
from minigpt.stages.lm_steps import NextTokenSteps


class PretrainStage(NextTokenSteps, Stage):
    """Language-model pretraining: minimise cross-entropy of each next token (Radford et al. 2018).

    A fresh model (`model` config) or one continued from `init_from`; the steps and metrics are
    `NextTokenSteps`': `train/loss`, and per validation `val/loss`, `val/ppl` and `val/bpb`.
    """
