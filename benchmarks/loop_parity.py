"""The pretrain stage next to a plain PyTorch loop, on the same weights and batches.

`plain_train` is model, AdamW on the same parameter groups, the same warmup-cosine schedule, gradient
clipping — and nothing else. `stage_train` runs the real Lightning stage, trainer and callbacks that
`train.py` composes. The throughput benchmark (`train_throughput.py`, beside this file) times both;
`tests/stages/test_loop_parity.py` checks that both give the same losses, so a speed gap cannot hide a
difference in the maths. Benchmark and test support, not part of the package.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import Tensor

from minigpt.losses.lm import lm_loss
from minigpt.model.transformer import Transformer
from minigpt.run import build_callbacks, build_loggers
from minigpt.stages.schedule import warmup_cosine

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_train_cfg(overrides: Sequence[str], out: Path) -> DictConfig:
    """`conf/train.yaml` with `overrides`, writing under `out`, with no checkpoints or samples: the plain loop
    has neither, and a benchmark's clock measures training."""
    overrides = [*overrides, "callbacks.model_checkpoint=null", "callbacks.samples=null", f"paths.output_dir={out}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.trainer.default_root_dir = str(out)
        del cfg["hydra"]
    return cfg


def plain_train(
    model: Transformer,
    batches: Sequence[tuple[Tensor, Tensor]],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    warmup_steps: int,
    min_lr_ratio: float,
    grad_clip: float,
    bf16: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Train on `batches` in order; returns (loss per step, wall-clock time at the end of each step).

    `on_step(n)` runs after step n (1-based) is done and timed, e.g. an evaluation (`speedrun.py`).
    """
    optimizer = torch.optim.AdamW(model.param_groups(weight_decay), lr=lr, betas=betas, eps=1e-8)
    scheduler = warmup_cosine(optimizer, warmup_steps, len(batches), min_lr_ratio)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    losses, times = [], []
    model.train()
    for inputs, targets in batches:
        with autocast:
            logits, _ = model(inputs)
            loss = lm_loss(logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        times.append(time.perf_counter())
        if on_step is not None:
            on_step(len(losses))
    return losses, times


class _StepRecorder(L.Callback):
    """Loss and end time of every training step."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses.append(float(outputs["loss"]))
        self.times.append(time.perf_counter())


def stage_train(
    cfg: DictConfig,
    model: Transformer,
    batches: Sequence[tuple[Tensor, Tensor]],
    callbacks: Sequence[L.Callback] = (),
) -> tuple[list[float], list[float]]:
    """Train a copy of `model` with the stage, trainer, callbacks and loggers `cfg` composes.

    Validation is off (the plain loop has none); everything that runs per step in `train.py` runs here,
    plus `callbacks` (e.g. `speedrun.py`'s evaluation on fixed windows).
    Returns (loss per step, wall-clock time at the end of each step).
    """
    stage = instantiate(cfg.stage, _partial_=True)(model_config=model.config, optim=cfg.optim)
    stage.model.load_state_dict(model.state_dict())
    recorder = _StepRecorder()
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*build_callbacks(cfg), recorder, *callbacks],
        logger=build_loggers(cfg) or False,
        max_steps=len(batches),
        limit_val_batches=0,
    )
    loader = torch.utils.data.DataLoader(list(batches), batch_size=None, shuffle=False)
    trainer.fit(stage, train_dataloaders=loader)
    return recorder.losses, recorder.times
