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


def _csv_steps(path) -> list[int]:
    import csv

    with open(path, newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def test_csv_logger_of_a_resumed_run_keeps_the_rows_before_the_checkpoint(tmp_path):
    from minigpt.scale.loggers import CSVLogger, continue_logs

    first = CSVLogger(save_dir=tmp_path, name="csv", version="")
    for step in range(10):
        first.log_metrics({"train/loss": float(step)}, step=step)
    first.save()  # a run killed after step 9, its checkpoint at step 6
    path = tmp_path / "csv" / "metrics.csv"
    assert _csv_steps(path) == list(range(10))

    resumed = CSVLogger(save_dir=tmp_path, name="csv", version="")
    continue_logs([resumed], tmp_path, step=6)
    for step in range(6, 12):
        resumed.log_metrics({"train/loss": float(step), "val/loss": 1.0}, step=step)  # a new column too
    resumed.save()
    assert _csv_steps(path) == list(range(12))  # continued, nothing lost or repeated

    fresh = CSVLogger(save_dir=tmp_path, name="csv", version="")
    continue_logs([fresh], tmp_path, step=0)  # a new run from step 0 in the same folder starts afresh
    fresh.log_metrics({"train/loss": 0.0}, step=0)
    fresh.save()
    assert _csv_steps(path) == [0]


def test_tensorboard_of_a_resumed_run_drops_the_events_after_the_checkpoint(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from minigpt.scale.loggers import continue_logs

    first = TensorBoardLogger(save_dir=tmp_path, name="tb", version="")
    for step in range(10):
        first.log_metrics({"loss": float(step)}, step=step)
    first.finalize("failed")
    resumed = TensorBoardLogger(save_dir=tmp_path, name="tb", version="")
    continue_logs([resumed], tmp_path, step=6)
    for step in range(6, 12):
        resumed.log_metrics({"loss": 100.0 + step}, step=step)
    resumed.finalize("success")
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    scalars = [(e.step, e.value) for e in events.Scalars("loss")]
    assert scalars == [(s, float(s)) for s in range(6)] + [(s, 100.0 + s) for s in range(6, 12)]


def test_a_resumed_run_logs_into_the_same_wandb_and_mlflow_runs(tmp_path):
    from minigpt.scale.loggers import WandbLogger, continue_logs, mlflow_logger

    ids = []
    for _ in range(2):  # the run, then its resumption in the same folder
        logger = WandbLogger(save_dir=str(tmp_path / "run"), project="minigpt", mode="offline")
        continue_logs([logger], tmp_path / "run", step=0)
        ids.append(logger.experiment.id)
        logger.finish("success")
    assert ids[0] == ids[1]
    other = WandbLogger(save_dir=str(tmp_path / "other"), project="minigpt", mode="offline")
    assert other._wandb_init["id"] != ids[0]  # another run folder, another W&B run

    runs = []
    for folder in ("run", "run", "other"):
        logger = mlflow_logger(experiment_name="t", tracking_uri=f"file:{tmp_path / 'mlruns'}")
        continue_logs([logger], tmp_path / folder, step=0)
        runs.append(logger.run_id)
        logger.finalize("success")
    assert runs[0] == runs[1] != runs[2]
