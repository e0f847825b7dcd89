"""Experiment loggers beyond CSV/TensorBoard: W&B (offline by default) and MLflow (a local store).

Both keep state outside the run (a W&B run object in the process, an MLflow run marked "running"), so
`close_loggers` finalises every logger whatever happened: a crashed job must not leave its W&B run open
for the next job of a sweep to reuse.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


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
