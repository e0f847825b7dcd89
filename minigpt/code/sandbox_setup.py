"""Runs as root inside the sample's fresh namespaces, then becomes the sample's user and starts its Python.

Not imported: `minigpt.code.isolation` passes this file's source to `python -I -S -c` (standard library
only). Steps, each a system call (ctypes `mount(2)`, no `mount` process per mount point: that loop of
processes cost ~80 ms a sample, this one ~1 ms):

1. bind-mount the sample's folder onto itself (a mount of its own, so it stays writable) and the Python
   installation, read-only, into it (the sample's user may not reach the original place);
2. remount every other mount point read-only, keeping its other flags (nosuid, nodev, noexec …; a
   remount replaces the per-mount flags it is given, so it is given the ones the mount already had);
3. drop to the sample's own user id (groups first, then gid, then uid: after setuid nothing can be undone)
   and `exec` the sandboxed interpreter.

Arguments: `argv[1]` is a JSON object {"dir", "python_home", "python", "uid", "args"}.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

SETUP_FAILED = 120
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOSYMFOLLOW, MS_NOATIME, MS_NODIRATIME, MS_BIND = 256, 1024, 2048, 4096
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
KEPT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
    "nosymfollow": MS_NOSYMFOLLOW,
}
_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str | None, target: str, flags: int) -> None:
    """`mount(2)`; raises OSError on failure."""
    src = source.encode() if source is not None else None
    if _libc.mount(src, target.encode(), None, ctypes.c_ulong(flags), None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def mount_points() -> list[tuple[str, int]]:
    """(mount point, its per-mount flags to keep) of every mount, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # "\\040" is a space in a path
            flags = sum(KEPT_FLAGS.get(option, 0) for option in fields[5].split(","))
            points.append((point, flags))
    return points


def main() -> None:
    """Mounts, privileges, exec; any failure exits with SETUP_FAILED and the reason on stderr."""
    config = json.loads(sys.argv[1])
    workdir, uid = config["dir"], config["uid"]
    try:
        mount(workdir, workdir, MS_BIND)
        inside = os.path.join(workdir, ".python")
        mount(config["python_home"], inside, MS_BIND)
        mount(None, inside, MS_REMOUNT | MS_BIND | MS_RDONLY)
        for point, flags in mount_points():
            if point != workdir:
                try:
                    mount(None, point, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
                except OSError:
                    pass  # a mount that refuses (e.g. locked by the kernel) stays as it was, as mount(8) would leave it
        os.chdir(workdir)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        os.execv(config["python"], [config["python"], *config["args"]])
    except OSError as err:
        os.write(2, f"sandbox setup failed: {err}\n".encode())
        os._exit(SETUP_FAILED)


if __name__ == "__main__":
    main()
