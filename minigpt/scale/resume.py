"""Which checkpoint a run resumes from, and which run folder it continues in.

`ckpt_path=last` means the `checkpoints/last.ckpt` of *this* run folder: the one `hydra.run.dir` names,
or the one `resume=<run folder>` names. Without either, `ckpt_path=last` continues the only run under
`paths.runs_dir` that has a checkpoint (its folder becomes this run's, see `run_folder_for`); when several
runs have one, which is meant is ambiguous, and the error lists them. A resumed run writes into the same
folder, so its metrics, samples and model folder continue the same history.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from minigpt.utils.errors import ConfigError

LAST = "last.ckpt"


def checkpoint_of(run_folder: str | Path) -> Path:
    """Where a run folder keeps its resumable checkpoint (a file, or a folder for sharded FSDP ones)."""
    return Path(run_folder) / "checkpoints" / LAST


def resumable_runs(runs_dir: str | Path) -> list[Path]:
    """The run folders (runs and sweep jobs) under `runs_dir` that hold a `last.ckpt`, newest first."""
    found = [path for path in Path(runs_dir).glob(f"**/checkpoints/{LAST}") if path.exists()]
    found.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    return [path.parent.parent for path in found]


def run_folder_for(resume: str | None, ckpt_path: str | None, runs_dir: str, fresh: str) -> str:
    """The folder a run writes into (Hydra's `hydra.run.dir` asks this through a resolver).

    `resume=<run folder>` → that folder; `ckpt_path=last` with exactly one resumable run under `runs_dir`
    → that run's folder; otherwise `fresh` (a new timestamped folder). An ambiguous `last` also gets a
    fresh folder, and `resolve_ckpt_path` then stops the run with the candidates listed.
    """
    if resume:
        return str(resume)
    if ckpt_path == "last":
        found = resumable_runs(runs_dir)
        if len(found) == 1:
            return str(found[0])
    return fresh


def resolve_ckpt_path(
    ckpt_path: str | None, run_dir: str | Path, runs_dir: str | Path, resume: str | None = None
) -> str | None:
    """Turn the `ckpt_path`/`resume` options into a path for `Trainer.fit`, or refuse them before training.

    Args:
        ckpt_path: null, `last` (this run folder's `last.ckpt`) or a path to a `.ckpt`.
        run_dir: this run's folder (`paths.output_dir`).
        runs_dir: where all runs of this task live (`paths.runs_dir`), searched to list candidates.
        resume: a run folder to continue (implies `ckpt_path=last`; the run writes into that folder).
    """
    if resume:
        if Path(resume).resolve() != Path(run_dir).resolve():
            raise ConfigError(
                f"resume={resume} but this run writes into {run_dir} (hydra.run.dir); drop hydra.run.dir, "
                "resume continues in the resumed run's own folder."
            )
        if ckpt_path not in (None, "last"):
            raise ConfigError(f"resume={resume} and ckpt_path={ckpt_path} both name a checkpoint; give one of them.")
        if not checkpoint_of(resume).exists():
            raise ConfigError(
                f"resume={resume} has no checkpoints/{LAST}; give a run folder that saved one "
                "(see callbacks.model_checkpoint.every_n_train_steps)."
            )
        return str(checkpoint_of(resume))
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        if checkpoint_of(run_dir).exists():
            return str(checkpoint_of(run_dir))
        found = resumable_runs(runs_dir)
        if not found:
            raise ConfigError(
                f"ckpt_path=last: no run under paths.runs_dir={runs_dir} has checkpoints/{LAST}; "
                "train once first, or point ckpt_path at a .ckpt file."
            )
        choices = ", ".join(f"resume={path}" for path in found)
        raise ConfigError(
            f"ckpt_path=last is ambiguous: this run's folder {run_dir} has no checkpoint and {len(found)} "
            f"run{'s' if len(found) != 1 else ''} under {runs_dir} have one; say which with one of: {choices}."
        )
    if not Path(ckpt_path).exists():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; give a .ckpt from a run's checkpoints/, or `last`.")
    return ckpt_path


def checkpoint_step(ckpt_path: str | Path) -> int | None:
    """The global step a Lightning checkpoint file was saved at (memory-mapped: the weights are not read).

    None for a sharded checkpoint (a folder), whose step is only known once Lightning restores it.
    """
    if Path(ckpt_path).is_dir():
        return None
    state = torch.load(ckpt_path, map_location="cpu", mmap=True, weights_only=False)
    return int(state["global_step"])


# conf/train.yaml's hydra.run.dir: `${minigpt.run_folder:${resume},${ckpt_path},${paths.runs_dir},<new folder>}`.
OmegaConf.register_new_resolver("minigpt.run_folder", run_folder_for, replace=True)
