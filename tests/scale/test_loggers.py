"""W&B offline and MLflow runs hold the metrics; loggers are closed even when training fails."""

from __future__ import annotations

import lightning as L
import pytest
import wandb

from minigpt.run import train


class FailAt(L.Callback):
    """Raise in the middle of training, as a crashing job would."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 2:
            raise RuntimeError("boom")


def _offline_run(run_dir):
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def test_wandb_offline_run_has_metrics_samples_and_model_artifact(compose_train, tmp_path):
    cfg = compose_train(
        "logger=wandb",
        "logger.wandb.log_model_folder=true",
        "trainer.max_steps=10",
        "trainer.val_check_interval=5",
        "trainer.log_every_n_steps=1",
        "callbacks.samples.num_samples=1",
        "sampling.max_new_tokens=8",
    )
    train(cfg)
    assert wandb.run is None  # finished, so the next job of a sweep starts its own run
    wandb.teardown()  # wait for W&B's writer process to flush the offline run
    records = next(_offline_run(tmp_path / "run").glob("*.wandb")).read_bytes()
    for key in (b"train/loss", b"val/loss", b"samples", b"optim", b"model.safetensors"):
        assert key in records, key  # metrics, the sample table, the resolved config, the artifact's files


def test_a_failing_run_still_finishes_its_wandb_run(compose_train, tmp_path):
    cfg = compose_train("logger=wandb", "trainer.log_every_n_steps=1", f"+callbacks.fail._target_={__name__}.FailAt")
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg)
    assert wandb.run is None
    assert _offline_run(tmp_path / "run").exists()


def test_mlflow_logs_into_a_local_store(compose_train, tmp_path):
    cfg = compose_train("logger=mlflow", "trainer.max_steps=5", "trainer.val_check_interval=5")
    cfg.paths.runs_dir = str(tmp_path / "runs")
    train(cfg)
    metric_files = list((tmp_path / "runs" / "mlruns").glob("*/*/metrics/val/loss"))
    assert len(metric_files) == 1
    assert float(metric_files[0].read_text().split()[1]) > 0
