"""`stage=sft`: supervised fine-tuning on conversations, loss on the assistant's tokens only.

Fine-tuning a pretrained model on demonstrations (Ouyang et al. 2022, InstructGPT §3.5; Wei et al.
2021, FLAN): the same next-token loss as pretraining, masked so that only the tokens the assistant
should produce count. The model learns to answer and to end its turn (`<|end|>`), not to imitate users.

What the stage adds to `Stage`:
* the chat special tokens, added to the tokenizer if missing, and the embedding grown to match;
* optional LoRA (`lora.r > 0`, see `minigpt.model.lora`): only low-rank adapters and the new token rows
  train; the run writes the adapter alone (`adapter/`) and the merged model folder (`model/`);
* at each validation, task scores (exact-match for exact tasks) on the validation prompts of the
  datamodule's tasks, answered by greedy decoding: `val/score/<task>` and their mean `val/score`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig
from torch import Tensor
from torchmetrics import MeanMetric

from minigpt.losses.lm import IGNORE_INDEX, lm_loss
from minigpt.model.folder import save_model_folder
from minigpt.stages.base import Stage
from minigpt.tokenizer.chat import add_chat_tokens
from minigpt.utils.errors import ConfigError


class SFTStage(Stage):
    """Supervised fine-tuning.

    Args (besides `Stage`'s):
        lora: {r, alpha, dropout, target_modules, bias, train_embedding}; `r: 0` trains every weight (full
            fine-tuning); `bias` and `train_embedding` also train biases and the whole (tied) token embedding.
        eval_tasks: whether to log task scores at each validation (needs `data.tasks`).
    """

    def __init__(
        self,
        *args: Any,
        lora: DictConfig | dict[str, Any] | None = None,
        eval_tasks: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.tokenizer is None:
            raise ConfigError("stage=sft has no tokenizer; set init_from=<model folder> or tokenizer.path.")
        old_vocab = self.model.config.vocab_size
        add_chat_tokens(self.tokenizer)  # idempotent: the datamodule usually added them already
        if self.tokenizer.vocab_size > old_vocab:
            self.model.resize_vocab(self.tokenizer.vocab_size)
        self.eval_tasks = eval_tasks
        self.lora = bool(lora and lora.get("r", 0))
        if self.lora:
            from minigpt.model.lora import apply_lora, lora_config, trainable_parameters  # imports peft

            assert lora is not None
            config = lora_config(
                lora["r"], lora["alpha"], lora["dropout"], lora["target_modules"], lora.get("bias", "none")
            )
            grown = self.tokenizer.vocab_size > old_vocab
            # train_embedding: every row trains, not just the new chat tokens (see `minigpt.model.lora`).
            rows_from = 0 if lora.get("train_embedding", False) else (old_vocab if grown else None)
            apply_lora(self.model, config, train_rows_from=rows_from)
            base = sum(p.numel() for n, p in self.model.named_parameters() if "lora_" not in n)
            self.trainable_fraction = trainable_parameters(self.model) / base
            rank_zero_info(
                f"LoRA r={config.r}: {trainable_parameters(self.model):,} trained parameters, "
                f"{100 * self.trainable_fraction:.2f}% of the model's {base:,}."
            )
        self.val_loss = MeanMetric()

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Full fine-tuning: the model's groups; LoRA: adapters (decayed) and new token rows (not)."""
        if not self.lora:
            return super().param_groups(weight_decay)
        from minigpt.model.lora import lora_param_groups

        return lora_param_groups(self.model, weight_decay)

    def setup(self, stage: str) -> None:
        """Fit the data to the model's context: fill in `data.seq_len`, or refuse one that is too long."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is None or not hasattr(datamodule, "seq_len"):
            return
        block = self.model.config.block_size
        if datamodule.seq_len is None:
            datamodule.seq_len = block
        elif datamodule.seq_len > block:
            raise ConfigError(
                f"data.seq_len={datamodule.seq_len} exceeds the model's context block_size={block}; "
                f"set data.seq_len={block} or leave it null."
            )

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        logits, aux = self.model(
            batch["input_ids"], positions=batch.get("positions"), attn_mask=batch.get("attn_mask")
        )
        return lm_loss(logits, batch["targets"]), aux

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
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        tasks = getattr(datamodule, "tasks", None)
        if not (self.eval_tasks and tasks) or self.trainer.sanity_checking:
            return
        from minigpt.evaluation.tasks import evaluate_tasks

        scores = evaluate_tasks(self.model, self.tokenizer, tasks, split="val", n=datamodule.num_eval)
        self.log_dict({f"val/score/{name}": value for name, value in scores.items()}, sync_dist=True)
        self.log("val/score", sum(scores.values()) / len(scores), prog_bar=True, sync_dist=True)

    def save_model_folder(self, folder: str | Path) -> Path:
        """The model folder; with LoRA, the merged model there and the adapter alone in `../adapter`."""
        if not self.lora:
            return super().save_model_folder(folder)
        from minigpt.model.lora import merge_lora, save_adapter

        folder = Path(folder)
        save_adapter(folder.parent / "adapter", self.model, self.tokenizer)
        return save_model_folder(folder, merge_lora(self.model), self.tokenizer)
