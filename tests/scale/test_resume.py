"""`ckpt_path=last` finds the newest checkpoint, and a SIGKILLed run resumes onto the same loss curve."""

from __future__ import annotations

import os
import signal
import time

import lightning as L
import pytest

from minigpt.scale.resume import newest_last_checkpoint, resolve_ckpt_path
from minigpt.utils.errors import ConfigError


class KillAt(L.Callback):
    """SIGKILL this process (no cleanup, no final checkpoint) at the end of training step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _touch_checkpoint(folder, age_s: float):
    path = folder / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_last_is_the_newest_last_ckpt_of_any_run_or_sweep_job(tmp_path):
    _touch_checkpoint(tmp_path / "2026-01-01_10-00-00", age_s=300)
    newest = _touch_checkpoint(tmp_path / "multirun" / "2026-01-01_11-00-00" / "1", age_s=10)
    _touch_checkpoint(tmp_path / "multirun" / "2026-01-01_11-00-00" / "0", age_s=60)
    assert newest_last_checkpoint(tmp_path) == newest
    assert resolve_ckpt_path("last", tmp_path) == str(newest)
    assert resolve_ckpt_path(None, tmp_path) is None


def test_missing_checkpoints_fail_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="ckpt_path=last found no checkpoints/last.ckpt"):
        resolve_ckpt_path("last", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), tmp_path)


@pytest.mark.slow
def test_killed_run_resumes_onto_the_uninterrupted_loss_curve(run_train, losses, tmp_path):
    # Dropout on, so that the resumed run must also repeat the random masks, not only the data order.
    common = (
        "trainer.max_steps=16",
        "trainer.val_check_interval=8",
        "trainer.log_every_n_steps=1",
        "callbacks.model_checkpoint.every_n_train_steps=5",
        "model.dropout=0.1",
    )
    runs = tmp_path / "runs"
    run_train(*common, f"hydra.run.dir={runs / 'full'}")
    killed = run_train(
        *common,
        f"hydra.run.dir={runs / 'killed'}",
        f"+callbacks.kill._target_={__name__}.KillAt",
        "+callbacks.kill.step=12",  # mid-way between the checkpoints at steps 10 and 15
        env={"PYTHONPATH": os.path.dirname(__file__)},
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    run_train(*common, f"hydra.run.dir={runs / 'resumed'}", "ckpt_path=last")

    full, resumed = losses(runs / "full"), losses(runs / "resumed")
    assert sorted(resumed) == list(range(10, 16))  # picked up the step-10 checkpoint of the killed run
    for step in resumed:
        assert resumed[step] == pytest.approx(full[step], abs=1e-6), step
    val_full, val_resumed = losses(runs / "full", "val/loss"), losses(runs / "resumed", "val/loss")
    assert val_resumed[15] == pytest.approx(val_full[15], abs=1e-6)
