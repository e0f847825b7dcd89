"""Resuming picks this run's checkpoint and keeps its history: `ckpt_path=last`, `resume=<run folder>`, kill -9."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch

from minigpt.evaluation.logs import find_metrics_csv
from minigpt.scale.resume import resolve_ckpt_path, run_folder_for
from minigpt.utils.errors import ConfigError


class KillAt(L.Callback):
    """SIGKILL this process (no cleanup, no final checkpoint) at the end of training step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _checkpoint(run_folder):
    path = run_folder / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    return path


def test_last_is_this_run_folders_checkpoint_not_the_newest_anywhere(tmp_path):
    runs = tmp_path / "runs"
    mine = _checkpoint(runs / "2026-01-01_10-00-00")
    _checkpoint(runs / "2026-01-01_11-00-00")  # newer, another run: must not be picked
    assert resolve_ckpt_path("last", runs / "2026-01-01_10-00-00", runs) == str(mine)
    assert resolve_ckpt_path(None, runs / "2026-01-01_10-00-00", runs) is None


def test_last_in_a_fresh_folder_with_several_candidates_is_an_error_listing_them(tmp_path):
    runs = tmp_path / "runs"
    _checkpoint(runs / "2026-01-01_10-00-00")
    _checkpoint(runs / "multirun" / "2026-01-01_11-00-00" / "0")
    with pytest.raises(ConfigError, match="2 runs") as err:
        resolve_ckpt_path("last", runs / "2026-01-02_09-00-00", runs)
    assert "2026-01-01_10-00-00" in str(err.value) and "multirun/2026-01-01_11-00-00/0" in str(err.value)
    assert "resume=" in str(err.value)


def test_run_folder_follows_resume_or_the_only_candidate(tmp_path):
    runs = tmp_path / "runs"
    fresh = str(runs / "2026-01-02_09-00-00")
    assert run_folder_for(None, None, str(runs), fresh) == fresh
    assert run_folder_for(None, "last", str(runs), fresh) == fresh  # nothing to resume: a new folder (error later)
    only = runs / "2026-01-01_10-00-00"
    _checkpoint(only)
    assert run_folder_for(None, "last", str(runs), fresh) == str(only)  # unambiguous: continue that run
    _checkpoint(runs / "2026-01-01_11-00-00")
    assert run_folder_for(None, "last", str(runs), fresh) == fresh  # ambiguous: resolve_ckpt_path lists them
    assert run_folder_for(str(only), None, str(runs), fresh) == str(only)


def test_missing_checkpoints_fail_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="no run under"):
        resolve_ckpt_path("last", tmp_path / "runs" / "new", tmp_path / "runs")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"resume=.* has no checkpoints/last\.ckpt"):
        resolve_ckpt_path(None, tmp_path / "runs" / "x", tmp_path / "runs", resume=str(tmp_path / "runs" / "x"))


def _ckpt_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def _metrics_rows(run_folder) -> list[dict[str, str]]:
    """The CSV rows without the wall-clock columns (throughput differs between any two runs)."""
    import csv

    path = find_metrics_csv(run_folder)
    assert path is not None, f"no metrics.csv under {run_folder}"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in rows]


def _assert_same_history(resumed_folder, full_folder) -> None:
    resumed, full = _metrics_rows(resumed_folder), _metrics_rows(full_folder)
    assert [r["step"] for r in resumed] == [r["step"] for r in full]
    for got, want in zip(resumed, full):
        assert got.keys() == want.keys()
        for key in want:
            if want[key] and key != "step":
                assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-6), (want["step"], key)
            else:
                assert got[key] == want[key], (want["step"], key)


COMMON = (
    "trainer.max_steps=16",
    "trainer.val_check_interval=8",
    "trainer.log_every_n_steps=1",
    "callbacks.model_checkpoint.every_n_train_steps=5",
    "model.dropout=0.1",  # the resumed run must also repeat the random masks, not only the data order
)


@pytest.mark.slow
def test_killed_run_resumed_in_its_folder_has_the_uninterrupted_history(run_train, tmp_path):
    runs = tmp_path / "runs"
    run_train(*COMMON, f"hydra.run.dir={runs / 'full'}")
    killed = run_train(
        *COMMON,
        f"hydra.run.dir={runs / 'killed'}",
        f"+callbacks.kill._target_={__name__}.KillAt",
        "+callbacks.kill.step=12",  # mid-way between the checkpoints at steps 10 and 15, after a validation
        env={"PYTHONPATH": os.path.dirname(__file__)},
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    assert _ckpt_step(runs / "killed" / "checkpoints" / "last.ckpt") == 10
    ckpt = runs / "killed" / "checkpoints" / "last.ckpt"
    resumed = run_train(*COMMON, f"hydra.run.dir={runs / 'killed'}", f"ckpt_path={ckpt}")
    assert "resumed from step 10" in resumed.stdout + resumed.stderr
    _assert_same_history(runs / "killed", runs / "full")
    assert "resumed from step 10" in (runs / "killed" / "train.log").read_text()  # the resume is an event


@pytest.mark.slow
def test_fdr_run_is_not_resumed_and_ckpt_last_continues_the_one_real_run(run_train, tmp_path):
    runs = tmp_path / "runs"
    every = ("trainer.log_every_n_steps=1", "callbacks.model_checkpoint.every_n_train_steps=10")
    run_train("trainer.max_steps=30", *every)
    first = sorted(p for p in runs.iterdir() if p.is_dir())
    assert len(first) == 1
    run_train("debug=fdr", "callbacks.samples.num_samples=1", "sampling.max_new_tokens=4")
    fdr = [p for p in runs.iterdir() if p.is_dir() and p not in first]
    assert len(fdr) == 1 and not (fdr[0] / "checkpoints").exists()  # fdr writes no checkpoint to mistake
    assert not (fdr[0] / "csv").exists() and not (fdr[0] / "samples.txt").exists()

    resumed = run_train("trainer.max_steps=40", "ckpt_path=last", *every)
    assert "resumed from step 30" in resumed.stdout + resumed.stderr
    assert _ckpt_step(first[0] / "checkpoints" / "last.ckpt") == 40  # it continued in that run's folder
    steps = [int(r["step"]) for r in _metrics_rows(first[0]) if r.get("train/loss")]
    assert steps == list(range(40))  # one history, 0…39, nothing lost or repeated
    # An ambiguous `last` (two real runs) is an error naming them: test_last_in_a_fresh_folder_with_several_….


def _weights(run_folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_folder / "model" / "model.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_kills_and_resumes_end_like_the_uninterrupted_run(run_train, tmp_path, seed):
    """Fault injection: kill -9 at random steps, resume each time; weights and metrics end up the same."""
    import random

    runs, steps, cadence = tmp_path / "runs", 12, 3
    common = (
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=6",
        "trainer.log_every_n_steps=1",
        f"callbacks.model_checkpoint.every_n_train_steps={cadence}",
        "model.dropout=0.1",
    )
    run_train(*common, f"hydra.run.dir={runs / 'full'}")
    folder, rng, done, kills = runs / "faulty", random.Random(seed), 0, []
    for _ in range(2):  # two kills at random steps, each after the first checkpoint and the last resume
        kill = rng.randint(max(done + 1, cadence + 1), steps - 1)
        resume = [f"resume={folder}"] if done else [f"hydra.run.dir={folder}"]
        proc = run_train(
            *common, *resume, f"+callbacks.kill._target_={__name__}.KillAt", f"+callbacks.kill.step={kill}",
            env={"PYTHONPATH": os.path.dirname(__file__)}, check=False,
        )  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        kills.append(kill)
        done = _ckpt_step(folder / "checkpoints" / "last.ckpt")
        # The newest cadence checkpoint survived; one of the killed step itself is never published, as
        # Lightning logs that step's metrics only after the batch's callbacks (see ResumableCheckpoint).
        assert done == (kill - 1) // cadence * cadence
    run_train(*common, f"resume={folder}")
    _assert_same_history(folder, runs / "full")
    full, faulty = _weights(runs / "full"), _weights(folder)
    assert full.keys() == faulty.keys()
    for name in full:
        assert torch.equal(full[name], faulty[name]), (kills, name)
