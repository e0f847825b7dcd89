"""The first code a sandboxed program runs: its resource limits, the audit-hook guard, then the sample.

This file is not imported inside the sandbox: `minigpt.code.execution` passes its source to
`python -I -S -c`, so it may use the standard library only (the sandbox has no `minigpt` on its path).
It runs in the sandboxed interpreter before any of the sample's code, so everything it sets binds the sample:

1. **Resource limits** (`resource.setrlimit`, soft = hard, so the sample cannot raise them again). They are
   set here rather than in a `preexec_fn`, which the `subprocess` docs call unsafe in a program with threads
   (the evaluator runs its workers as threads); limits set before the sample starts bind it just the same.
2. **The guard**, an audit hook (PEP 578, `sys.addaudithook`): Python reports each sensitive operation
   (opening a file, creating a socket, starting a process, sending a signal, loading native code) to the
   hook before doing it; the hook stops the program at the first forbidden one. An audit hook cannot be
   removed, but it only sees what goes through the interpreter: native code (a C extension, or a bug in
   one) acts without asking. The guard is a second layer behind the kernel's namespaces, not a sandbox
   on its own (docs/code.md says what each layer does and does not stop).

Arguments: `argv[1]` is a JSON object {"limits": {...}, "guard": bool, "sample": file name}, or
{"serve": fd}: the fork server (`serve`), which forks one child per sample after its imports are done.
"""

from __future__ import annotations

import json
import linecache
import os
import resource
import sys
import sysconfig

# Exit statuses the evaluator reads (a sample can exit with them on purpose, which only costs it its result).
EXIT_REFUSED = 97  # the guard stopped a forbidden operation
EXIT_OUT_OF_MEMORY = 98  # MemoryError: the address-space limit was reached

# Operations the guard refuses outright, by audit event name (Python docs, "Audit events table").
FORBIDDEN_EVENTS = frozenset(
    {
        # New processes: a fork bomb, or a way out of the limits' bookkeeping (a child outlives its parent).
        "os.fork",
        "os.forkpty",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.system",
        "subprocess.Popen",
        "pty.spawn",
        # Signals: the sample may not signal other processes (the evaluator, other samples).
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        # The network: no socket at all (creating one is refused, so connect/bind never come).
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.getaddrinfo",
        # Native code runs beyond the hook's sight: refuse loading it by hand.
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.cdata",
        "ctypes.call_function",
        "sys.setrecursionlimit",  # a huge limit turns a RecursionError into a C stack overflow (a segfault)
    }
)
# Operations that change a path: allowed inside the sample's folder only.
WRITE_EVENTS = frozenset(
    {
        "os.chmod",
        "os.chown",
        "os.link",
        "os.mkdir",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.symlink",
        "os.truncate",
        "os.utime",
        "shutil.rmtree",
    }
)
LIST_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob"})
_OPEN_FOR_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def set_limits(limits: dict[str, int]) -> None:
    """Apply the resource limits (each soft = hard: the sample cannot raise them again).

    - CPU seconds: a busy loop gets SIGXCPU even if the wall clock is slow to notice (the evaluator's
      wall-clock timeout is the other half: a sample that sleeps uses no CPU).
    - Address space: an allocation past it fails with MemoryError instead of swapping the machine.
    - File size: a sample that writes a huge file is stopped (SIGXFSZ) before the disk fills.
    - Processes: the number of processes (and threads) of the sample's user; binds only a non-root user
      (the kernel exempts root) and counts all of that user's processes, which is why it is set only when
      the namespace layer runs the sample as a user of its own (`processes` is 0 otherwise).
    - Open files: bounds descriptor leaks; core dumps are off (a crash writes nothing).
    """
    pairs = {
        resource.RLIMIT_CPU: limits["cpu_seconds"],
        resource.RLIMIT_AS: limits["memory_bytes"],
        resource.RLIMIT_FSIZE: limits["file_bytes"],
        resource.RLIMIT_NOFILE: limits["open_files"],
        resource.RLIMIT_CORE: 0,
    }
    if os.getuid() != 0 and limits.get("processes"):
        pairs[resource.RLIMIT_NPROC] = limits["processes"]
    for which, value in pairs.items():
        resource.setrlimit(which, (value, value))


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    """True when `path` (resolved, symlinks followed) lies in one of `roots`."""
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root + os.sep) for root in roots)


def install_guard(workdir: str) -> None:
    """Install the audit hook: writes inside `workdir` only, reads inside it or the standard library."""
    writable = (os.path.realpath(workdir),)
    stdlib = {os.path.realpath(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib")}
    # `python -I -S`'s own search path (the stdlib, its zip, lib-dynload): a traceback looks for a deleted
    # file's lines there (sample.py in python311.zip), and that look must not count as a forbidden read.
    stdlib |= {os.path.realpath(entry) for entry in sys.path if entry}
    readable = (*writable, *sorted(stdlib), "/dev/null", "/dev/urandom", "/dev/zero")
    busy = False  # the hook's own calls (realpath) raise events too: do not judge those

    def refuse(event: str, detail: object) -> None:
        os.write(2, f"refused: {event} {detail!r} is not allowed in the sandbox\n".encode(errors="replace"))
        os._exit(EXIT_REFUSED)

    def guard(event: str, args: tuple) -> None:
        nonlocal busy
        if busy:
            return
        busy = True
        try:
            if event in FORBIDDEN_EVENTS or (event == "import" and args[0] in ("ctypes", "_ctypes")):
                refuse(event, args[:1] if args else "")
            elif event == "open" and args[0] is not None and not isinstance(args[0], int):
                path, mode, flags = os.fsdecode(args[0]), args[1] or "", args[2] or 0
                writing = any(c in mode for c in "wax+") or bool(flags & _OPEN_FOR_WRITING)
                if not _inside(path, writable if writing else readable):
                    refuse("open", path)
            elif event in WRITE_EVENTS or event in LIST_EVENTS:
                roots = readable if event in LIST_EVENTS else writable
                for target in [os.fsdecode(a) for a in args[:2] if isinstance(a, str | bytes)]:
                    if not _inside(target, roots):
                        refuse(event, target)
        finally:
            busy = False

    sys.addaudithook(guard)


def run_sample(config: dict) -> None:
    """Set the limits, install the guard, run the sample as `__main__` (in the current folder); map
    MemoryError to its own status."""
    set_limits(config["limits"])
    sample = os.path.abspath(config["sample"])
    with open(sample, encoding="utf-8", errors="replace") as f:
        source = f.read()
    # The file goes, its text stays in linecache for tracebacks: the sample cannot read its own source
    # back from disk, where a judge's secret marker (minigpt.code.judge) would be in plain sight.
    os.unlink(sample)
    linecache.cache[sample] = (len(source), None, source.splitlines(keepends=True), sample)
    if config["guard"]:
        install_guard(os.path.dirname(sample))
    sys.argv = [sample]
    namespace = {"__name__": "__main__", "__file__": sample, "__builtins__": __builtins__}
    try:
        exec(compile(source, sample, "exec"), namespace)
    except MemoryError:
        os.write(2, b"MemoryError: the sample ran out of its address-space limit\n")
        os._exit(EXIT_OUT_OF_MEMORY)


def _forked_sample(request: dict, fds: list[int], control: int) -> None:
    """In the fork server's child: become the sample's own session with its output pipes, folder and
    environment, run it, and exit with the status a fresh interpreter would have."""
    code = 0
    try:
        os.close(control)  # the sample must not talk to the fork server
        os.setsid()  # a process group of its own: the evaluator kills it as one
        null = os.open(os.devnull, os.O_RDONLY)
        for fd, target in ((null, 0), (fds[0], 1), (fds[1], 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["dir"])
        os.environ.clear()
        os.environ.update(request["env"])
        run_sample(request)
    except SystemExit as exit_:  # what the interpreter does with it at exit
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()  # wait for the sample's threads, as interpreter exit does
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def serve(control: int) -> None:
    """The fork server: imports done once, then one `fork` per sample request (docs/code.md).

    Each request on the `control` socket (SOCK_SEQPACKET) is a JSON object (the sample's boot config plus
    its folder and environment) with the write ends of its stdout and stderr pipes attached; the reply is
    {"pid": …} at once, then {"status": …} (the raw wait status) when the child has been reaped. The
    server ends when the evaluator closes its end.
    """
    import socket

    sysconfig.get_paths()  # warm what every child's guard reads (the configuration variables), once
    channel = socket.socket(fileno=control)
    while True:
        message, fds, _, _ = socket.recv_fds(channel, 1 << 16, 2)
        if not message:
            return
        pid = os.fork()
        if pid == 0:
            _forked_sample(json.loads(message), fds, control)
        for fd in fds:
            os.close(fd)
        channel.sendall(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        channel.sendall(json.dumps({"status": status}).encode())


def main() -> None:
    """Run the sample `argv[1]` describes, or serve forks when it says {"serve": control fd}."""
    config = json.loads(sys.argv[1])
    if "serve" in config:
        serve(config["serve"])
    else:
        run_sample(config)


if __name__ == "__main__":
    main()
