"""The kernel's layer of the sandbox: Linux namespaces, entered with util-linux's `unshare`.

Two levels, chosen once per process (`isolation=auto` takes the strongest that works here):

- `namespaces` (needs root and util-linux's `unshare`): each sample gets
  * a **network namespace** with no interface but a downed loopback: no connection leaves, not even to
    localhost;
  * a **PID namespace**: the sample is process 1 of its own process tree, sees no other process (a fresh
    `/proc`) and can signal none; when it exits, the kernel kills everything it left behind;
  * a **mount namespace** in which every mount is remounted read-only except the sample's own folder, so
    no file outside it can be written (not `/tmp` or `/dev/shm` either);
  * a **user id of its own**, so that the process-count limit binds (the kernel exempts root
    from `RLIMIT_NPROC`) and root's files (its home, its keys) are closed to it. The Python installation
    is bind-mounted into the sample's folder, read-only, because it may live where that user cannot
    reach (here: under `/root`).
- `process`: resource limits, a new session killed as a group, and the audit-hook guard only
  (`sandbox_boot.py`). This is what a machine without the tools (or a user without root) gets; the result
  of every run names the level that ran.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from minigpt.utils.errors import ConfigError

LEVELS = ("auto", "namespaces", "process")
PYTHON_MOUNT = ".python"  # where the Python installation appears inside the sample's folder
# The setup that runs as root inside the new namespaces, then becomes the sample's user (its own file).
SETUP_SOURCE = (Path(__file__).parent / "sandbox_setup.py").read_text()
SETUP_FAILED = 120  # its exit status when a mount fails


def python_home() -> Path:
    """The base Python installation (not a virtual environment: samples get the standard library only)."""
    return Path(sys.base_prefix).resolve()


def python_in_home() -> Path:
    """The interpreter's path relative to `python_home()`."""
    executable = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    try:
        return executable.relative_to(python_home())
    except ValueError:
        return Path("bin") / executable.name


def namespace_command(workdir: Path, uid: int, python_args: list[str]) -> list[str]:
    """The command that runs `python <python_args>` inside fresh namespaces as user `uid`, in `workdir`."""
    (workdir / PYTHON_MOUNT).mkdir(exist_ok=True)
    os.chown(workdir, uid, uid)  # the sample's user owns its folder (and nothing else)
    setup = {
        "dir": str(workdir),
        "python_home": str(python_home()),
        "python": str(workdir / PYTHON_MOUNT / python_in_home()),
        "uid": uid,
        "args": python_args,
    }
    unshare = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    return [*unshare, *direct_command(["-I", "-S", "-c", SETUP_SOURCE, json.dumps(setup)])]


def direct_command(python_args: list[str]) -> list[str]:
    """The command of the `process` level: the base interpreter, run directly."""
    return [str(python_home() / python_in_home()), *python_args]


@functools.cache
def namespaces_work() -> bool:
    """Whether the `namespaces` level works on this machine: a trial run of `python -c pass` in it."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    with tempfile.TemporaryDirectory(prefix="minigpt-probe-") as tmp:
        os.chmod(tmp, 0o755)
        cmd = namespace_command(Path(tmp), 65533, ["-I", "-S", "-c", "pass"])
        try:
            return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def resolve_level(level: str) -> str:
    """`auto` → the strongest level that works here; a named level is checked and returned."""
    if level not in LEVELS:
        raise ConfigError(f"isolation={level} is not a level; choose one of: {', '.join(LEVELS)}.")
    if level == "process":
        return level
    if namespaces_work():
        return "namespaces"
    if level == "namespaces":
        raise ConfigError(
            "isolation=namespaces needs root with util-linux's unshare, which this machine "
            "lacks; use isolation=process (resource limits and the audit-hook guard only) or isolation=auto."
        )
    return "process"
