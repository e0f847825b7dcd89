"""`NextTokenSteps`: the pretraining objective as Lightning steps, for the stages that train on raw text;
`chat_nll`: the same loss on a chat batch's assistant tokens (SFT, ReST's Improve steps).

Composed by `PretrainStage` (a model from scratch or a folder) and `UpcycleStage` (a dense model turned
MoE): the objective is the same, only the model they start from differs. Minimise the cross-entropy of
each next token (Radford et al. 2018). Logs `train/loss`, the MoE router statistics, and per validation
`val/loss`, `val/ppl` (= e^loss) and, when the data knows its bytes per token, `val/bpb` (bits per byte,
comparable across tokenizers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from minigpt.losses.lm import bits_per_byte, lm_loss
from minigpt.model.transformer import Transformer

if TYPE_CHECKING:  # the type checker sees the `Stage` attributes the mixin uses; at run time it is a plain class
    from minigpt.stages.base import Stage as _MixedInto
else:
    _MixedInto = object


def chat_nll(model: Transformer, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
    """SFT's objective on a chat batch: the next-token loss on the assistant's tokens only (targets are
    `IGNORE_INDEX` elsewhere), and the model's aux dict. Shared by SFT and ReST's Improve steps."""
    logits, aux = model(batch["input_ids"], positions=batch.get("positions"), attn_mask=batch.get("attn_mask"))
    return lm_loss(logits, batch["targets"]), aux


class NextTokenSteps(_MixedInto):
    """Training, validation and logging of the next-token objective on (inputs, targets) batches.

    A mixin, not a stage: a stage lists it before `Stage` (`class PretrainStage(NextTokenSteps, Stage)`)
    and says where its model comes from (`Stage.build_model`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.val_loss = MeanMetric()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One step of LM loss (+ any auxiliary loss the model reports)."""
        inputs, targets = batch
        logits, aux = self.model(inputs)
        loss = lm_loss(logits, targets)
        self.log("train/loss", loss, prog_bar=True)
        self.log_moe_metrics(aux)
        return loss + self.aux_loss(aux)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Accumulate the validation loss, weighted by tokens."""
        inputs, targets = batch
        logits, _ = self.model(inputs)
        self.val_loss.update(lm_loss(logits, targets), weight=targets.numel())

    def on_validation_epoch_end(self) -> None:
        """Log mean validation loss, perplexity and bits per byte."""
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log_dict({"val/loss": loss, "val/ppl": torch.exp(loss)}, prog_bar=True, sync_dist=True)
        if self.inputs.val_bytes_per_token is not None:
            self.log("val/bpb", bits_per_byte(loss, self.inputs.val_bytes_per_token()), sync_dist=True)
