"""Keep `python train.py -m ... strategy=ddp` to one folder per job.

Lightning's DDP launcher starts ranks 1..n-1 by re-running the script with the parent's command line.
In a Hydra multirun that command line still holds `-m` and the sweep, so each relaunched rank runs the
*whole sweep again* and writes a second multirun folder (Lightning issue #11300). The fix: in multirun
mode, start each rank as a single run of the parent's *job* — its own overrides, the job's output folder
as the run folder, and no `.hydra/` of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

_MULTIRUN_FLAGS = ("-m", "--multirun")


def job_arguments(argv: Sequence[str], job_overrides: Sequence[str]) -> list[str]:
    """The command-line arguments that run exactly one job of a sweep as a single run.

    Drops the multirun flag and the sweep's overrides from `argv`, keeps the other flags (e.g.
    `--config-name x`), and appends the job's own resolved overrides.
    """
    kept = [arg for arg in argv if arg not in _MULTIRUN_FLAGS and (arg.startswith("-") or "=" not in arg)]
    return [*kept, *job_overrides]


def _subprocess_cmd(local_rank: int) -> tuple[list[str], str]:
    """Drop-in for Lightning's `_hydra_subprocess_cmd` that also handles multirun jobs."""
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    args = sys.argv[1:]
    if hydra.mode == RunMode.MULTIRUN:
        args = job_arguments(args, list(hydra.overrides.task))
    # The rank writes into the parent's (job) folder and leaves the parent's .hydra/ alone.
    command += [
        *args,
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
    ]
    return command, get_original_cwd()


def install_multirun_fix() -> None:
    """Route Lightning's DDP relaunch through `_subprocess_cmd` (idempotent)."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = _subprocess_cmd
