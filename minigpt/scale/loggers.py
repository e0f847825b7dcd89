"""Experiment loggers: CSV that a resumed run continues, W&B (offline by default) and MLflow (a local store).

A resumed run continues the history of its run folder in every logger (`continue_logs`): the CSV file
keeps its rows before the checkpoint's step, TensorBoard purges the events after it, W&B resumes the
same run id (derived from the run folder), MLflow logs into the run tagged with the same folder.

W&B and MLflow keep state outside the run (a W&B run object in the process, an MLflow run marked
"running"), so `close_loggers` finalises every logger whatever happened: a crashed job must not leave
its W&B run open for the next job of a sweep to reuse.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from minigpt.utils.io import atomic_write

log = logging.getLogger(__name__)

RUN_FOLDER_TAG = "minigpt.run_folder"


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing `metrics.csv` keeps its rows before `keep_before`.

    Lightning's writer deletes the file it finds; a resumed run would lose every metric before the
    checkpoint. Rows at or after the checkpoint's step are dropped instead: the resumed run logs them again.
    """

    def __init__(self, log_dir: str, keep_before: int) -> None:
        self.keep_before = keep_before
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = [row for row in reader if row.get("step") and int(row["step"]) < self.keep_before]
        if not rows:
            path.unlink()
            return

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(path, write)
        self.metrics_keys = fields  # new rows append under the same header (a new key rewrites it, as usual)


class CSVLogger(_LightningCSVLogger):
    """Lightning's `CSVLogger` whose `metrics.csv` a resumed run continues instead of deleting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_before = 0  # a fresh run starts a fresh file; `continue_logs` raises it on resume

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer, created on first use (after `continue_logs` has said what to keep)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self.keep_before)
        return self._experiment


def wandb_run_id(run_folder: str | Path) -> str:
    """A W&B run id that is a function of the run folder, so a resumed run logs into the same W&B run."""
    return hashlib.sha256(str(Path(run_folder).resolve()).encode()).hexdigest()[:16]


def continue_logs(loggers: list[Logger], run_folder: str | Path, step: int) -> None:
    """Make every logger continue the history of `run_folder` from `step` (0: a fresh run).

    Call before anything is logged: the loggers create their files and runs lazily, on first use.
    """
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            logger.keep_before = step
        elif isinstance(logger, TensorBoardLogger) and step > 0:
            logger._kwargs["purge_step"] = step  # SummaryWriter drops the events at or after the resume step
        elif isinstance(logger, MLFlowLogger):
            _continue_mlflow_run(logger, str(Path(run_folder).resolve()))


def _continue_mlflow_run(logger: MLFlowLogger, run_folder: str) -> None:
    """Tag the MLflow run with its run folder, and reuse the run that already has that tag."""
    logger.tags = {**(logger.tags or {}), RUN_FOLDER_TAG: run_folder}
    client = logger._mlflow_client
    experiment = client.get_experiment_by_name(logger._experiment_name)
    if logger._run_id is not None or experiment is None:
        return
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_FOLDER_TAG}` = '{run_folder}'")
    if found:
        logger._run_id = found[0].info.run_id


class WandbLogger(_LightningWandbLogger):
    """Lightning's W&B logger that can also upload the finished model folder, and ends its run on `finish`.

    Args:
        log_model_folder: log the run's model folder (`model.safetensors`, `config.json`,
            `tokenizer.json`) as a W&B artifact of type `model` at the end. Works offline too: the
            artifact is stored with the offline run and uploaded by `wandb sync`.
        **kwargs: everything `lightning.pytorch.loggers.WandbLogger` (and `wandb.init`) takes, e.g.
            `project`, `mode` (`offline`, `online`, `disabled`).
    """

    def __init__(self, log_model_folder: bool = False, **kwargs: Any) -> None:
        if kwargs.get("save_dir") and not (kwargs.get("id") or kwargs.get("version")):
            kwargs["id"] = wandb_run_id(kwargs["save_dir"])  # Lightning passes resume="allow": same folder, same run
        super().__init__(**kwargs)
        self.log_model_folder = log_model_folder

    @rank_zero_only
    def publish_model_folder(self, folder: str | Path) -> None:
        """Upload `folder` as a `model` artifact, if `log_model_folder` asked for it."""
        if not self.log_model_folder:
            return
        import wandb

        artifact = wandb.Artifact(name=f"model-{self.experiment.id}", type="model")
        artifact.add_dir(str(folder))
        self.experiment.log_artifact(artifact, aliases=["latest"])

    @rank_zero_only
    def finish(self, status: str) -> None:
        """End the W&B run (marked failed unless `success`), so the next job of a sweep starts its own.

        Separate from `finalize`, which Lightning itself calls at the end of `fit`, before the model
        folder exists.
        """
        if self._experiment is not None:
            self._experiment.finish(exit_code=0 if status == "success" else 1)
            self._experiment = None


def mlflow_logger(**kwargs: Any) -> MLFlowLogger:
    """Lightning's `MLFlowLogger`, with MLflow's plain-folder store allowed (MLflow 3 asks for an opt-in).

    `mlflow ui --backend-store-uri <tracking_uri>` browses the runs.
    """
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = kwargs.get("tracking_uri")
    if uri and uri.startswith("file:"):  # MLflow wants an absolute path; the config's is relative to the cwd
        kwargs["tracking_uri"] = Path(uri.removeprefix("file:")).resolve().as_uri()
    return MLFlowLogger(**kwargs)


def publish_model_folder(loggers: list[Logger], folder: Path) -> None:
    """Hand the finished model folder to every logger that can store it (W&B artifacts)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.publish_model_folder(folder)


def close_loggers(loggers: list[Logger], status: str) -> None:
    """Finalise every logger with `status` ("success" or "failed"); one failing does not stop the rest."""
    for logger in loggers:
        try:
            logger.finalize(status)
            if isinstance(logger, WandbLogger):
                logger.finish(status)
        except Exception:  # a logger that cannot close must not hide the job's own result or error
            log.exception("Could not finalise logger %s", type(logger).__name__)
