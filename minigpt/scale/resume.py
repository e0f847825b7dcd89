"""`ckpt_path=last`: find the checkpoint to resume from among the earlier runs of this task."""

from __future__ import annotations

from pathlib import Path

from minigpt.utils.errors import ConfigError

LAST = "last.ckpt"


def newest_last_checkpoint(runs_dir: str | Path) -> Path | None:
    """The most recently written `checkpoints/last.ckpt` under `runs_dir` (runs and sweep jobs), if any.

    A sharded (FSDP) checkpoint is a folder of that name; it counts the same.
    """
    found = [path for path in Path(runs_dir).glob(f"**/checkpoints/{LAST}") if path.exists()]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def resolve_ckpt_path(ckpt_path: str | None, runs_dir: str | Path) -> str | None:
    """Turn the `ckpt_path` option into a path for `Trainer.fit`: `last` → the newest run's `last.ckpt`.

    Raises `ConfigError` when the path (or any `last.ckpt`) does not exist, before training starts.
    """
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        newest = newest_last_checkpoint(runs_dir)
        if newest is None:
            raise ConfigError(
                f"ckpt_path=last found no checkpoints/{LAST} under paths.runs_dir={runs_dir}; "
                "train once first, or point ckpt_path at a .ckpt file."
            )
        return str(newest)
    if not Path(ckpt_path).exists():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist; give a .ckpt from a run's checkpoints/, or `last`.")
    return ckpt_path
