"""Run untrusted Python (a model's sample, a benchmark's tests) and say what happened, without being hurt by it.

One sample = one fresh process in a fresh temporary folder, removed afterwards. The layers, outermost first:

1. **A wall clock.** The sample runs in a session of its own (`start_new_session=True`), so it and every
   process it starts share one process group; at the deadline the whole group is killed (SIGKILL cannot be
   caught) and the sample reaped (`wait`), so nothing is left running and no zombie piles up. A sample
   that ends on time has its group killed too: a child it left behind dies with it.
2. **The kernel's namespaces** (`minigpt.code.isolation`): no network, its own process tree, a read-only
   file system but for its folder, a user id of its own — where the machine allows them.
3. **Resource limits and the audit-hook guard**, set inside the sandboxed interpreter before the sample's
   first line (`minigpt.code.sandbox_boot`).
4. **A minimal interpreter.** `python -I -S`: isolated mode ignores every `PYTHON*` variable and the user's
   site-packages and leaves the script's folder off `sys.path`; `-S` skips `site`, so the sample sees the
   standard library and nothing installed (no torch, no minigpt). The environment holds only `PATH`,
   `LANG` and a `HOME`/`TMPDIR` inside the sample's folder: no tokens or keys from the evaluator's. `-u`
   (unbuffered) keeps what a sample printed before it was killed at its timeout.
5. **Bounded output.** stdout and stderr are read as they come; of each, the first and the last
   `max_output_bytes / 2` are kept and the middle is read and dropped (a sample that prints gigabytes
   neither blocks nor fills our memory, and the end of a traceback survives).

Every outcome is a `Result`, never an exception: `passed` (exit status 0), `failed` (an exception or a
non-zero exit: wrong code, invalid Python), `timeout` (wall clock or CPU limit), `crashed` (killed by a
signal, out of memory, a file too large) or `refused` (the guard stopped a forbidden operation).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from minigpt.code import isolation
from minigpt.code.sandbox_boot import EXIT_OUT_OF_MEMORY, EXIT_REFUSED
from minigpt.utils.errors import ConfigError

if TYPE_CHECKING:
    from minigpt.code.fork_server import ForkServer

BOOT_SOURCE = (Path(__file__).parent / "sandbox_boot.py").read_text()
SAMPLE_NAME = "sample.py"
STATUSES = ("passed", "failed", "timeout", "crashed", "refused")
# Namespace samples run as a user of their own: uid BASE_UID + 64 * (evaluator's pid mod 500) + worker slot,
# so that the per-user process limit counts one sample's processes only, also when several evaluators
# (parallel test workers) run at once.
BASE_UID = 61000
SLOTS = 64
ERROR_CHARS = 2000


@dataclass(frozen=True)
class Limits:
    """What one sample may use. Defaults suit a unit test of a short function."""

    timeout: float = 3.0  # wall-clock seconds, sandbox start included
    memory_bytes: int = 256 * 2**20  # address space (virtual memory) of the interpreter
    file_bytes: int = 16 * 2**20  # the largest file it may write
    processes: int = 16  # processes (and threads) of its user, itself included
    open_files: int = 64
    max_output_bytes: int = 64 * 2**10  # kept of each of stdout and stderr (its first and last halves)

    def rlimits(self) -> dict[str, int]:
        """The values `sandbox_boot.set_limits` applies (CPU time: the wall timeout, rounded up, + 1 s)."""
        return {
            "cpu_seconds": int(self.timeout) + 1,
            "memory_bytes": self.memory_bytes,
            "file_bytes": self.file_bytes,
            "processes": self.processes,
            "open_files": self.open_files,
        }


@dataclass
class Result:
    """What happened to one sample."""

    status: str  # one of STATUSES
    error: str  # why it did not pass ("" when it did): the last lines of stderr, or the limit it hit
    stdout: str
    stderr: str
    seconds: float
    isolation: str  # the layers that were active, e.g. "namespaces(net,pid,mount-ro,uid)+rlimits+guard"
    exit_code: int | None = None
    truncated: bool = False  # output beyond max_output_bytes was dropped

    @property
    def passed(self) -> bool:
        """True for a sample that ran to the end with status 0."""
        return self.status == "passed"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return asdict(self)


@dataclass
class BoundedOutput:
    """What is kept of one stream: its first and its last `cap // 2` bytes (the end holds a traceback's
    exception and a judge's verdict), and how many bytes in between were dropped."""

    cap: int
    head: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, data: bytes) -> None:
        """Keep `data` if there is room, else roll it through the tail."""
        room = self.cap // 2 - len(self.head)
        self.head += data[: max(room, 0)]
        self.tail += data[max(room, 0) :]
        excess = len(self.tail) - (self.cap - self.cap // 2)
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        """The kept bytes as text, with a note where bytes were dropped."""
        gap = f"\n[... {self.dropped} bytes dropped ...]\n".encode() if self.dropped else b""
        return bytes(self.head + gap + self.tail).decode("utf-8", errors="replace")


def read_until(
    stdout: int, stderr: int, deadline: float, cap: int, ended: Callable[[], bool], kill_group: Callable[[], None]
) -> tuple[BoundedOutput, BoundedOutput, bool]:
    """Read the two pipes until both close or `deadline` passes; True as third item on a timeout.

    When the sample's own process has `ended`, its group is killed at once: a child it left behind still
    holds the pipes open, and waiting for it would turn a finished sample into a timeout.
    """
    outputs = {stdout: BoundedOutput(cap), stderr: BoundedOutput(cap)}
    with selectors.DefaultSelector() as selector:
        for fd in outputs:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return outputs[stdout], outputs[stderr], True
            for key, _ in selector.select(min(remaining, 0.05)):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    selector.unregister(key.fd)
                    continue
                outputs[key.fd].add(data)
            if ended():
                kill_group()  # the sample has ended: its leftover children go too
    return outputs[stdout], outputs[stderr], False


def _children(pid: int) -> list[int]:
    """The process ids of `pid`'s children (Linux's /proc/<pid>/task/<pid>/children)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """Kill the sample and everything it started, reap it, and return its exit status.

    In the namespace level our child is `unshare`, and its child the namespace's first process: killing
    that one makes the kernel kill the whole namespace, and `unshare` reaps it and exits. Killing `unshare`
    first would orphan its child to the machine's init, which may never reap it (a zombie).
    """
    for pid in _children(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    kill_group(proc.pid)  # whatever is left of the session (the process level's grandchildren)
    return proc.wait()


def kill_group(pid: int) -> None:
    """SIGKILL every process in the sample's session (it leads its own group: pgid = its pid)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


def _last_lines(text: str, n: int = 5) -> str:
    """The end of a traceback: the exception and the line that raised it."""
    return "\n".join(text.strip().splitlines()[-n:])[-ERROR_CHARS:]


def classify(exit_code: int, stderr: str, timed_out: bool, limits: Limits) -> tuple[str, str]:
    """(status, error text) from how the process ended."""
    if timed_out:
        return "timeout", f"no result within the {limits.timeout:g} s wall-clock limit"
    if exit_code == 0:
        return "passed", ""
    if exit_code == EXIT_REFUSED:
        return "refused", _last_lines(stderr, 1)
    if exit_code == EXIT_OUT_OF_MEMORY:
        return "crashed", f"out of memory (limit {limits.memory_bytes / 2**20:g} MiB)"
    if exit_code == isolation.SETUP_FAILED:
        return "crashed", f"the sandbox could not be set up: {_last_lines(stderr)}"
    if exit_code < 0:
        sig = signal.Signals(-exit_code)
        if sig in (signal.SIGXCPU, signal.SIGKILL) and "MemoryError" not in stderr:
            # SIGXCPU at the soft CPU limit; a SIGKILL we did not send comes from the hard one (or the OOM killer).
            return "timeout", f"CPU time limit ({limits.rlimits()['cpu_seconds']} s) reached ({sig.name})"
        if sig == signal.SIGXFSZ:
            return "crashed", f"wrote a file larger than the {limits.file_bytes / 2**20:g} MiB limit (SIGXFSZ)"
        return "crashed", f"killed by {sig.name}"
    return "failed", _last_lines(stderr) or f"exit status {exit_code}"


class Sandbox:
    """Runs programs under `limits` at an isolation level, up to `workers` at a time.

    `isolation="auto"` picks the strongest level that works on this machine (`minigpt.code.isolation`);
    `guard=False` switches off the audit hook, to test the kernel's layer on its own.
    """

    def __init__(
        self, limits: Limits | None = None, isolation_level: str = "auto", guard: bool = True, start: str = "exec"
    ) -> None:
        self.limits = limits or Limits()
        self.level = isolation.resolve_level(isolation_level)
        if start not in ("exec", "fork"):
            raise ConfigError(f"start={start!r} is not a way to start samples; use exec or fork.")
        if start == "fork" and self.level != "process":
            raise ConfigError(
                "start=fork forks samples from one warm interpreter, which cannot give each its own namespaces; "
                "use it with isolation=process, or keep start=exec for the namespace level."
            )
        self.start = start
        self._servers: dict[int, ForkServer] = {}
        if self.level == "process" and not guard:
            raise ConfigError(
                "guard=false at the process isolation level would run the sample with no isolation at all; "
                "keep guard=true, or use isolation=namespaces (root with util-linux's unshare)."
            )
        self.guard = guard
        self._slots: list[int] = list(range(SLOTS))  # free worker slots (each a uid in the namespace level)
        self._first_uid = BASE_UID + SLOTS * (os.getpid() % 500)
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        """The layers that are active, as recorded in each `Result`."""
        layers = ["namespaces(net,pid,mount-ro,uid)"] if self.level == "namespaces" else ["process-group"]
        start = ["forked"] if self.start == "fork" else []  # from a warm fork server, not a fresh interpreter
        return "+".join([*layers, "rlimits", *(["guard"] if self.guard else []), *start])

    @property
    def uids(self) -> range:
        """The user ids this sandbox's programs run as in the namespace level (to check none is left)."""
        return range(self._first_uid, self._first_uid + SLOTS)

    def _boot_config(self) -> dict[str, object]:
        """What `sandbox_boot` needs: the limits, whether to guard, the sample's file name."""
        limits = self.limits.rlimits()
        if self.level != "namespaces":
            # RLIMIT_NPROC counts every process (and thread) of the user: without a user of its own the
            # sample would share the count with everything the evaluator's user runs. The guard refuses forks.
            limits["processes"] = 0
        return {"limits": limits, "guard": self.guard, "sample": SAMPLE_NAME}

    def _command(self, workdir: Path, slot: int) -> list[str]:
        python_args = ["-I", "-S", "-u", "-c", BOOT_SOURCE, json.dumps(self._boot_config())]
        if self.level == "namespaces":
            return isolation.namespace_command(workdir, self._first_uid + slot, python_args)
        return isolation.direct_command(python_args)

    def run(self, source: str) -> Result:
        """Run one program (its source text) and return what happened; never raises for the program's sake."""
        with self._lock:
            slot = min(self._slots)  # the lowest free one: a worker keeps its slot (and its fork server)
            self._slots.remove(slot)
        try:
            return self._run_in_slot(source, slot)
        finally:
            with self._lock:
                self._slots.append(slot)

    def _run_in_slot(self, source: str, slot: int) -> Result:
        workdir = Path(tempfile.mkdtemp(prefix="minigpt-sandbox-"))
        start = time.monotonic()
        try:
            (workdir / SAMPLE_NAME).write_text(source, encoding="utf-8", errors="replace")
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir), "TMPDIR": str(workdir)}
            if self.start == "fork":
                out, err, timed_out, exit_code = self._server(slot).run(
                    {**self._boot_config(), "dir": str(workdir), "env": env}, start + self.limits.timeout, self.limits
                )
            else:
                out, err, timed_out, exit_code = self._run_process(workdir, slot, env, start)
            stderr = err.text()
            if exit_code is None:  # the fork server died under it (it is restarted for the next sample)
                return Result("crashed", "the fork server ended", out.text(), stderr, 0.0, self.description)
            status, error = classify(exit_code, stderr, timed_out, self.limits)
            return Result(
                status=status,
                error=error,
                stdout=out.text(),
                stderr=stderr,
                seconds=time.monotonic() - start,
                isolation=self.description,
                exit_code=None if timed_out else exit_code,
                truncated=bool(out.dropped or err.dropped),
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run_process(
        self, workdir: Path, slot: int, env: dict[str, str], start: float
    ) -> tuple[BoundedOutput, BoundedOutput, bool, int]:
        """Start the sample as a fresh interpreter, read its output until it ends or times out, reap it."""
        proc = subprocess.Popen(
            self._command(workdir, slot),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: one killpg reaches everything it starts
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            out, err, timed_out = read_until(
                proc.stdout.fileno(),
                proc.stderr.fileno(),
                start + self.limits.timeout,
                self.limits.max_output_bytes,
                ended=lambda: proc.poll() is not None,
                kill_group=lambda: kill_group(proc.pid),
            )
        finally:
            exit_code = _stop(proc)  # reaped: no zombie
            proc.stdout.close()
            proc.stderr.close()
        return out, err, timed_out, exit_code

    def _server(self, slot: int) -> ForkServer:
        """The slot's fork server, started on first use (and again if it died)."""
        from minigpt.code.fork_server import ForkServer  # it reads output with this module's helpers

        with self._lock:
            server = self._servers.get(slot)
            if server is None or not server.alive():
                server = self._servers[slot] = ForkServer()
            return server

    def close(self) -> None:
        """Stop the fork servers (they also stop on their own when this process ends)."""
        with self._lock:
            for server in self._servers.values():
                server.close()
            self._servers.clear()

    def run_many(self, sources: Sequence[str], workers: int = 4) -> list[Result]:
        """Run every program, `workers` at a time (threads each driving one subprocess); results in order."""
        if not 1 <= workers <= len(self._slots):
            raise ValueError(f"workers={workers} must be between 1 and {len(self._slots)}")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.run, sources))
