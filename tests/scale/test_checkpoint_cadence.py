"""Checkpoints come when asked: a resumable `last.ckpt` at every cadence step and at the end, the best separately."""

from __future__ import annotations

from pathlib import Path

import torch

from minigpt.run import train


def _step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def test_cadence_saves_every_n_steps_without_any_validation_and_the_final_step(compose_train, tmp_path):
    # The 400-step, every-100 run of the issue, scaled down: 40 steps, every 10, validation switched off.
    cfg = compose_train(
        "trainer.max_steps=40",
        "trainer.limit_val_batches=0",
        "callbacks.model_checkpoint.every_n_train_steps=10",
        "callbacks.model_checkpoint.save_top_k=-1",  # keep every cadence checkpoint, not only last.ckpt
    )
    train(cfg)
    folder = tmp_path / "run" / "checkpoints"
    kept = sorted(p for p in folder.glob("step*.ckpt"))
    assert [_step(p) for p in kept] == [10, 20, 30, 40]
    assert [p.name for p in kept] == ["step000010.ckpt", "step000020.ckpt", "step000030.ckpt", "step000040.ckpt"]
    assert _step(folder / "last.ckpt") == 40


def test_last_holds_the_final_step_and_the_best_checkpoint_is_separate(compose_train, tmp_path):
    cfg = compose_train(
        "trainer.max_steps=40",
        "trainer.val_check_interval=25",  # one validation, off the cadence
        "callbacks.model_checkpoint.every_n_train_steps=10",
    )
    train(cfg)
    folder = tmp_path / "run" / "checkpoints"
    assert _step(folder / "last.ckpt") == 40  # the end of training always saves its final step
    best = list(folder.glob("best*.ckpt"))
    assert len(best) == 1 and _step(best[0]) == 25  # chosen by val/loss, at the validation
    assert not list(folder.glob("step*.ckpt"))  # save_top_k=0 (default): the cadence keeps only last.ckpt


def test_fast_dev_run_writes_no_checkpoint_log_or_samples(compose_train, tmp_path):
    cfg = compose_train("debug=fdr", "callbacks.samples.num_samples=1", "sampling.max_new_tokens=4")
    train(cfg)
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists()
    assert not (run / "csv").exists()
    assert not (run / "samples.txt").exists()
