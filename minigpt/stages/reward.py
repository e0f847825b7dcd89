"""`stage=reward`: a reward model trained on preference pairs (Bradley–Terry, `minigpt.losses.reward`).

The SFT model's trunk plus a scalar head on the last token of prompt + reply (`minigpt.model.heads`;
Ouyang et al. 2022 §3.5 start the reward model from the SFT model too). Composes `ChatModel` for the chat
setup it shares with SFT (chat tokens, optional LoRA on the trunk). Logs loss,
accuracy (the fraction of pairs with r_chosen > r_rejected) and the mean reward margin, on training
batches and on the held-out pairs. The model folder is marked as a reward model (`load_reward_model`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import load_model
from torch import Tensor
from torchmetrics import MeanMetric

from minigpt.losses.reward import reward_loss
from minigpt.model.folder import resolve_model_folder
from minigpt.model.heads import REWARD_HEAD, RewardModel, ScalarHead, is_reward_folder, save_reward_model
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.utils.errors import ConfigError


class RewardStage(Stage):
    """Reward modelling.

    Args (besides `Stage`'s):
        lora: LoRA on the trunk, as `SFTStage`'s (`r: 0` trains every weight).
        use_margin: subtract each pair's `margin` inside the sigmoid (Llama 2 §3.2.2).
        margin_scale: the margin is multiplied by this (a gold-score difference of 1 → `margin_scale`).
        center_coef: η of the reward-centering term η·(r_w + r_l)² (Eisenstein et al. 2023); 0 = off.
    """

    def __init__(
        self,
        *args: Any,
        lora: Mapping[str, Any] | None = None,
        use_margin: bool = False,
        margin_scale: float = 1.0,
        center_coef: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if center_coef < 0:
            raise ConfigError(f"stage.center_coef={center_coef} must be ≥ 0 (0 switches centering off).")
        self.use_margin, self.margin_scale, self.center_coef = use_margin, margin_scale, center_coef
        self.chat = ChatModel.prepare(self.model, self.tokenizer, lora, "reward")
        self.head = ScalarHead(self.model.config.n_embd)
        init_from = kwargs.get("init_from")
        if init_from and is_reward_folder(init_from):  # continue a reward model: its head too, not a zero head
            load_model(self.head, str(resolve_model_folder(init_from) / REWARD_HEAD))
        self.val_metrics = {name: MeanMetric() for name in ("loss", "accuracy", "margin")}
        for name, metric in self.val_metrics.items():
            self.add_module(f"val_{name}", metric)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The trunk's groups (all of it, or its LoRA adapters) plus the head, undecayed."""
        head = {"params": list(self.head.parameters()), "weight_decay": 0.0}
        return [*self.chat.param_groups(self.model, weight_decay), head]

    def rewards(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """Rewards of the chosen (B,) and rejected (B,) rows, one forward pass over both."""
        hidden, aux = self.model.hidden_states(batch["input_ids"])
        rewards = self.head(hidden, batch["lengths"])  # (2B,)
        n = rewards.shape[0] // 2
        return rewards[:n], rewards[n:], aux

    def _step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        chosen, rejected, aux = self.rewards(batch)
        margin = batch["margin"] * self.margin_scale if self.use_margin else None
        loss = reward_loss(chosen, rejected, margin, self.center_coef)
        diff = (chosen - rejected).detach()
        return loss, {"loss": loss.detach(), "accuracy": (diff > 0).float().mean(), "margin": diff.mean()}, aux

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Bradley–Terry loss (+ any auxiliary loss the trunk reports)."""
        loss, metrics, aux = self._step(batch)
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, prog_bar=True)
        return loss + self.aux_loss(aux)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate loss, accuracy and margin over the held-out pairs."""
        _, metrics, _ = self._step(batch)
        for name, value in metrics.items():
            self.val_metrics[name].update(value, weight=batch["margin"].shape[0])

    def on_validation_epoch_end(self) -> None:
        """Log `val/loss`, `val/accuracy`, `val/margin`."""
        for name, metric in self.val_metrics.items():
            self.log(f"val/{name}", metric.compute(), prog_bar=name != "margin", sync_dist=True)
            metric.reset()

    def save_model_folder(self, folder: str | Path) -> Path:
        """The reward model folder: the (merged) trunk marked `extra.head="reward"` plus the head."""
        return save_reward_model(folder, RewardModel(self.chat.merged(self.model), self.head), self.tokenizer)
