"""`stage=sft`: supervised fine-tuning on conversations, loss on the assistant's tokens only.

Fine-tuning a pretrained model on demonstrations (Ouyang et al. 2022, InstructGPT §3.5; Wei et al.
2021, FLAN): the same next-token loss as pretraining, masked so that only the tokens the assistant
should produce count. The model learns to answer and to end its turn (`<|end|>`), not to imitate users.

What the stage composes on `Stage`:
* `ChatModel`: the chat special tokens, added to the tokenizer if missing, and the embedding grown to
  match; optional LoRA (`lora.r > 0`): only low-rank adapters and the new token rows train; the run
  writes the adapter alone (`adapter/`) and the merged model folder (`model/`);
* task scoring: at each validation, task scores (exact-match for exact tasks) on the validation prompts
  of the data's tasks, answered by greedy decoding: `val/score/<task>` and their mean `val/score`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor
from torchmetrics import MeanMetric

from minigpt.losses.lm import IGNORE_INDEX
from minigpt.stages.base import Stage
from minigpt.stages.chat_model import ChatModel
from minigpt.stages.lm_steps import chat_nll
from minigpt.stages.task_scoring import log_greedy_task_scores


class SFTStage(Stage):
    """Supervised fine-tuning.

    Args (besides `Stage`'s):
        lora: {r, alpha, dropout, target_modules, bias, train_embedding}; `r: 0` trains every weight (full
            fine-tuning); `bias` and `train_embedding` also train biases and the whole (tied) token embedding.
        eval_tasks: whether to log task scores at each validation (needs `data.tasks`).
    """

    def __init__(
        self, *args: Any, lora: Mapping[str, Any] | None = None, eval_tasks: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.chat = ChatModel.prepare(self.model, self.tokenizer, lora, "sft")
        self.eval_tasks = eval_tasks
        self.val_loss = MeanMetric()

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Full fine-tuning: the model's groups; LoRA: adapters (decayed) and new token rows (not)."""
        return self.chat.param_groups(self.model, weight_decay)

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        return chat_nll(self.model, batch)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Masked LM loss (+ any auxiliary loss the model reports)."""
        loss, aux = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss + self.aux_loss(aux)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate the masked loss, weighted by the number of assistant tokens."""
        loss, _ = self._loss(batch)
        self.val_loss.update(loss, weight=(batch["targets"] != IGNORE_INDEX).sum())

    def on_validation_epoch_end(self) -> None:
        """Log the validation loss and, with tasks, the task scores on validation prompts."""
        self.log("val/loss", self.val_loss.compute(), prog_bar=True, sync_dist=True)
        self.val_loss.reset()
        log_greedy_task_scores(self, self.eval_tasks)

    def save_model_folder(self, folder: str | Path) -> Path:
        """The model folder; with LoRA, the merged model there and the adapter alone in `../adapter`."""
        return self.chat.save(folder, self.model, self.tokenizer)
