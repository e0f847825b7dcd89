"""A fork server for the process isolation level: one warm sandbox interpreter per worker, one `fork` per sample.

Starting a fresh `python -I -S` per sample costs ~20–50 ms before the sample's first line; most of it is
the interpreter's start and imports. A fork server pays that once: a sandbox interpreter (`python -I -S
-u`, the boot code of `sandbox_boot`, the standard library only, no resource limits and no guard of its
own) waits for requests and forks a child per sample. The child does exactly what a fresh sandboxed
interpreter does before the sample (`sandbox_boot.run_sample`): it becomes a session of its own, takes
the sample's pipes as stdout and stderr, moves into the sample's fresh folder with the minimal
environment, sets the resource limits, deletes the program file and installs the guard — only then does
the sample's first line run. The same design as Android's zygote or `multiprocessing`'s forkserver.

What is the same as a fresh interpreter per sample: the wall clock that kills the sample's process group,
the resource limits, the guard, the standard library only, the minimal environment, the fresh folder,
bounded output. What differs: the sample shares the server's already-imported standard-library modules
(imported before the guard was installed: `json`, `socket`, …; a module the guard refuses to import is
never among them, so `import ctypes` is still refused), and it is not a fresh process image. The
namespace level is not offered here: each sample's namespaces must be new, and `unshare` from a warm
interpreter needs native calls in it (`sandbox_setup`'s ctypes), which a sample could then reach.

The protocol: a SOCK_SEQPACKET socket pair; each request is a JSON message with the write ends of the
sample's stdout and stderr pipes attached (SCM_RIGHTS); the server replies {"pid"} at once and
{"status"} (the raw wait status) after reaping the child. The server ends when its socket closes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from typing import Any

from minigpt.code import isolation
from minigpt.code.execution import BOOT_SOURCE, BoundedOutput, Limits, kill_group, read_until


class ForkServer:
    """One warm sandbox interpreter that forks a child per sample (one per worker: requests are serial)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = isolation.direct_command(
            ["-I", "-S", "-u", "-c", BOOT_SOURCE, json.dumps({"serve": theirs.fileno()})]
        )
        self.process = subprocess.Popen(
            command,
            pass_fds=[theirs.fileno()],
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        theirs.close()
        self.channel = ours

    def alive(self) -> bool:
        """Whether the server is still running."""
        return self.process.poll() is None

    def _reply(self, timeout: float) -> dict[str, Any] | None:
        """The server's next message, or None if it ended (or said nothing within `timeout`)."""
        self.channel.settimeout(max(timeout, 0.001))
        try:
            message = self.channel.recv(4096)
        except (TimeoutError, OSError):
            return None
        return json.loads(message) if message else None

    def run(
        self, request: dict[str, Any], deadline: float, limits: Limits
    ) -> tuple[BoundedOutput, BoundedOutput, bool, int | None]:
        """Run one sample: (stdout, stderr, timed out, exit code like `Popen.returncode`, None if the server died)."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            try:
                socket.send_fds(self.channel, [json.dumps(request).encode()], [out_write, err_write])
            finally:
                os.close(out_write)  # the child holds them now: the pipes close when it (and its group) ends
                os.close(err_write)
            started = self._reply(10.0)
            if started is None:
                self.close()
                return BoundedOutput(limits.max_output_bytes), BoundedOutput(limits.max_output_bytes), False, None
            pid = started["pid"]
            finished: list[dict[str, Any]] = []

            def ended() -> bool:
                if not finished:
                    reply = self._reply(0.0)
                    finished.extend([reply] if reply is not None else [])
                return bool(finished)

            out, err, timed_out = read_until(
                out_read, err_read, deadline, limits.max_output_bytes, ended, lambda: kill_group(pid)
            )
            kill_group(pid)  # at the deadline, and whatever the sample left behind
            if not finished:
                reply = self._reply(max(deadline - time.monotonic(), 0.0) + 5.0)
                if reply is None:
                    self.close()
                    return out, err, timed_out, None
                finished.append(reply)
            return out, err, timed_out, os.waitstatus_to_exitcode(finished[0]["status"])
        finally:
            os.close(out_read)
            os.close(err_read)

    def close(self) -> None:
        """Stop the server: closing its socket ends its loop; it is killed if it does not end at once."""
        self.channel.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
