"""The resumable checkpoint: `last.ckpt` at a fixed step cadence and at the end, written atomically.

Lightning's `ModelCheckpoint` mixes two jobs: keeping the best model by a metric, and keeping a
checkpoint to resume from. Mixed, the second waits for the first: with a monitored metric, a
step-cadence save is deferred until a validation has produced the metric, and the end of training is
saved only if it falls on a validation. Here the resumable checkpoint is its own callback, driven by
steps alone; the best-by-metric one stays Lightning's (`callbacks.best_checkpoint`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L

from minigpt.scale.resume import LAST
from minigpt.utils.errors import ConfigError


class ResumableCheckpoint(L.Callback):
    """Save `dirpath/last.ckpt` every `every_n_train_steps` optimizer steps and at the final step.

    A save has two phases. The state is written (to a temporary name) at the end of the training batch
    that completes the step or, when a validation follows at that step, at the end of the validation:
    Lightning resumes a checkpoint *after* the validation of its step, so one taken before it would lose
    that validation to a kill. It is published as `last.ckpt` at the next hook (the next batch's start,
    or the end of training), after the loggers have written the step's own metrics, which Lightning
    hands them only after the batch's callbacks. So `last.ckpt` never claims a step whose metrics are
    not on disk, and a run killed at any moment resumes onto one continuous history.

    Args:
        dirpath: the run's `checkpoints/` folder.
        every_n_train_steps: the cadence; null saves at the validation steps (`trainer.val_check_interval`).
        save_top_k: besides `last.ckpt`, keep this many of the newest `step000100.ckpt`-style copies
            (hard links, no extra disk); 0 keeps none, -1 keeps all.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None, save_top_k: int = 0) -> None:
        if every_n_train_steps is not None and (not isinstance(every_n_train_steps, int) or every_n_train_steps < 1):
            raise ConfigError(
                f"callbacks.model_checkpoint.every_n_train_steps={every_n_train_steps!r} must be a positive "
                "integer (or null: at each validation), e.g. every_n_train_steps=500."
            )
        self.dirpath, self.every_n_train_steps, self.save_top_k = Path(dirpath), every_n_train_steps, save_top_k
        self._written_step = -1  # the step of the state written last (published or pending)
        self._pending = False  # written, not yet published
        self._after_validation = -1

    def _cadence(self, trainer: L.Trainer) -> int | None:
        if self.every_n_train_steps is not None:
            return self.every_n_train_steps
        interval = trainer.val_check_interval
        return interval if isinstance(interval, int) and trainer.limit_val_batches != 0 else None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Publish the state written at the previous step: its metrics are logged by now."""
        self.publish(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Write on the cadence and at the last step: now, or after this step's validation if one is due."""
        step, cadence = trainer.global_step, self._cadence(trainer)
        final = trainer.max_steps is not None and 0 < trainer.max_steps <= step
        if step > 0 and (final or (cadence and step % cadence == 0)):
            if _validation_due(trainer):
                self._after_validation = step
            else:
                self.write(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the step deferred to after its validation."""
        if not trainer.sanity_checking and self._after_validation == trainer.global_step:
            self.write(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Publish the final step; a run stopped early (max_time, early stopping) is written here first."""
        if trainer.global_step > 0:
            self.write(trainer)
        self.publish(trainer)

    def write(self, trainer: L.Trainer) -> None:
        """Write the current state under a temporary name (once per step); `publish` makes it `last.ckpt`."""
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.global_step == self._written_step:
            return
        trainer.save_checkpoint(self._tmp, weights_only=False)  # every rank takes part (sharded: one piece each)
        self._written_step, self._pending = trainer.global_step, True

    def publish(self, trainer: L.Trainer) -> None:
        """Flush the loggers, then move the written state onto `last.ckpt` (and keep a step copy)."""
        if not self._pending:
            return
        for logger in trainer.loggers:  # the metrics up to this step reach the disk before the checkpoint does
            logger.save()
        if trainer.is_global_zero:
            _replace(self._tmp, self.dirpath / LAST)
            if self.save_top_k:
                self._keep_step_copy(self._written_step)
        trainer.strategy.barrier("resumable_checkpoint")
        self._pending = False

    @property
    def _tmp(self) -> Path:
        return self.dirpath / f".{LAST}.tmp"

    def _keep_step_copy(self, step: int) -> None:
        last, copy = self.dirpath / LAST, self.dirpath / f"step{step:06d}.ckpt"
        if copy.exists():
            _remove(copy)
        if last.is_dir():
            shutil.copytree(last, copy)
        else:
            try:
                os.link(last, copy)  # the next save renames a new file onto last.ckpt; this inode stays as it is
            except OSError:  # a filesystem without hard links
                shutil.copy2(last, copy)
        if self.save_top_k > 0:
            for old in sorted(self.dirpath.glob("step*.ckpt"))[: -self.save_top_k]:
                _remove(old)


def _validation_due(trainer: L.Trainer) -> bool:
    """Whether Lightning will validate right after this training batch (its own test, a private one)."""
    loop = trainer.fit_loop
    try:
        return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))
    except AttributeError:  # another Lightning version: save before the validation, as Lightning's callback does
        return False


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _replace(src: Path, dst: Path) -> None:
    """Move `src` onto `dst`: one atomic rename for a file; a sharded (folder) checkpoint swaps folders."""
    if src.is_dir() and dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        if old.exists():
            _remove(old)
        os.replace(dst, old)
        os.replace(src, dst)
        _remove(old)
    else:
        os.replace(src, dst)
