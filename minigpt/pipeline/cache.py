"""Cache entries written atomically: build into a temporary folder, rename it into place when done.

A folder `<cache>/<name>-<key>/` exists only once its build finished, because a rename within one
filesystem is atomic on POSIX: a build that is killed leaves only `<cache>/.<name>-<key>.tmp-<pid>/`,
which is never read as an entry, and is removed by the next build of the same entry once its process is
gone. Two processes building the same entry both finish; the second rename fails and its copy is dropped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

TEMP_MARK = ".tmp-"


def temp_folder(entry: Path, pid: int | None = None) -> Path:
    """Where the process `pid` (default: this one) builds `entry` before renaming it into place."""
    return entry.parent / f".{entry.name}{TEMP_MARK}{os.getpid() if pid is None else pid}"


def _alive(pid: int) -> bool:
    """Whether a process with this id is running (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(entry: Path) -> list[Path]:
    """Delete the temporary folders of `entry` left by builds whose process is gone; returns them."""
    removed = []
    for temp in entry.parent.glob(f".{entry.name}{TEMP_MARK}*"):
        pid = temp.name.rsplit(TEMP_MARK, 1)[1]
        if not pid.isdigit() or not _alive(int(pid)) or int(pid) == os.getpid():
            shutil.rmtree(temp, ignore_errors=True)
            removed.append(temp)
    return removed


def build_once(entry: Path, build: Callable[[Path], None]) -> bool:
    """Make `entry` by `build(temp_folder)` unless it exists; True when it was built now.

    A build that raises leaves nothing behind (its temporary folder is removed) and the error propagates.
    """
    if entry.is_dir():
        return False
    entry.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(entry)
    temp = temp_folder(entry)
    temp.mkdir()
    try:
        build(temp)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    try:
        temp.rename(entry)
    except OSError:
        if not entry.is_dir():  # not a concurrent build that finished first: a real failure
            raise
        shutil.rmtree(temp, ignore_errors=True)
    return True
