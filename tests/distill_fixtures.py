"""Shared by the distillation tests: a tiny reversal task, tiny model folders, and a short distillation run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from minigpt.data.chat import ChatDataModule
from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.stages.distill import DistillStage
from minigpt.stages.inputs import prepare_fit
from minigpt.tasks.reversal import Reversal
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens

ALPHABET = "abcd"
OPTIM = {
    "lr": 3e-3, "weight_decay": 0.0,
    "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
}  # fmt: skip


def task() -> Reversal:
    """Reverse 2–4 letters of `ALPHABET`."""
    return Reversal(seed=0, min_len=2, max_len=4, alphabet=ALPHABET)


def model_folder(path: Path, seed: int, init_std: float = 0.02, text: str = ALPHABET + "reverse: ") -> Path:
    """A tiny random model with a char tokenizer over `text` plus the chat tokens.

    A teacher gets a large `init_std`: its random next-token distributions are then peaked and depend on
    the context, a target the near-uniform student (init_std 0.02) must learn.
    """
    torch.manual_seed(seed)
    tokenizer = CharTokenizer.train(text)
    add_chat_tokens(tokenizer)
    config = ModelConfig(
        n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=tokenizer.vocab_size, init_std=init_std
    )
    return save_model_folder(path, Transformer(config), tokenizer)


class StepLosses(L.Callback):
    """Records the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))


def distil(tmp_path: Path, steps: int, teacher_seed: int = 1, **options: Any) -> tuple[DistillStage, list[float]]:
    """Distil `tmp_path/teacher` into `tmp_path/student` for `steps` steps, validating at the end.

    Returns the stage and the loss of every step; the folders are rebuilt from their seeds each call, so
    two calls start from the same models and draw the same batches.
    """
    teacher = model_folder(tmp_path / "teacher", seed=teacher_seed, init_std=0.3)
    student = model_folder(tmp_path / "student", seed=0)
    _, tokenizer = load_model_folder(student)
    dm = ChatDataModule(tasks={"reversal": task()}, num_train=256, num_val=16, num_eval=4, batch_size=16, **{
        "pack": options.pop("pack", False), "seed": 0})  # fmt: skip
    dm.attach_tokenizer(tokenizer)
    torch.manual_seed(0)
    stage = DistillStage(
        model_config=None, optim=OPTIM, tokenizer=tokenizer, init_from=str(student), teacher=str(teacher), **options
    )
    record = StepLosses()
    trainer = L.Trainer(
        max_steps=steps, val_check_interval=steps, check_val_every_n_epoch=None, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[record],
    )  # fmt: skip
    prepare_fit(stage, dm)
    trainer.fit(stage, datamodule=dm)
    return stage, record.losses
