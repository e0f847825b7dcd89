"""Run `train.py` as a subprocess: the way to test DDP/FSDP launches (an in-process `ddp` would re-run pytest)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from minigpt.evaluation.logs import find_metrics_csv, read_metrics

TRAIN_PY = Path(__file__).resolve().parents[2] / "train.py"


@pytest.fixture
def run_train(tiny_overrides: list[str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`run_train(*overrides, env=None, check=True)`: a tiny `train.py` run from `tmp_path`, runs under
    `tmp_path/runs`; fails the test with the run's output if it fails (unless `check=False`)."""

    def _run(*overrides: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
        flags = [arg for arg in overrides if arg.startswith("-")]  # Hydra wants -m before the overrides
        overrides = tuple(arg for arg in overrides if not arg.startswith("-"))
        command = [sys.executable, str(TRAIN_PY), *flags, *tiny_overrides, f"paths.runs_dir={tmp_path / 'runs'}"]
        command += overrides
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", **(env or {})}
        proc = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            pytest.fail(f"train.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    return _run


def step_losses(run_dir: Path, key: str = "train/loss") -> dict[int, float]:
    """{step: value} of one metric from a run's CSV log."""
    path = find_metrics_csv(run_dir)
    assert path is not None, f"no metrics.csv under {run_dir}"
    return dict(read_metrics(path)[key])


@pytest.fixture
def losses() -> Callable[..., dict[int, float]]:
    """`losses(run_dir, key="train/loss")` → {step: value} from the run's CSV log."""
    return step_losses
