"""The execution engine: ordinary programs get the right status, hostile ones are contained, each in its own test.

Two sandboxes: `guarded` (the best level this machine has, with the audit-hook guard: what evaluation uses)
and `kernel` (the namespace level with the guard off), which shows that the kernel's layer alone contains
each attack. CI runs as root with util-linux, so the kernel tests run there.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from minigpt.code.execution import Limits, Sandbox
from minigpt.code.isolation import namespaces_work
from minigpt.utils.errors import ConfigError

LIMITS = Limits(timeout=1.5, memory_bytes=128 * 2**20, processes=8, max_output_bytes=4096)


@pytest.fixture(scope="module", params=["auto", "fork"])
def guarded(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The best level here, and the process level's fork server: every guarded test runs against both."""
    sandbox = Sandbox(LIMITS) if request.param == "auto" else Sandbox(LIMITS, "process", start="fork")
    yield sandbox
    sandbox.close()


@pytest.fixture(scope="module")
def kernel() -> Sandbox:
    if not namespaces_work():
        pytest.skip("the namespace level needs root with util-linux's unshare")
    return Sandbox(LIMITS, "namespaces", guard=False)


def processes_matching(text: str) -> list[int]:
    """Process ids whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def processes_of_users(uids: range) -> list[int]:
    """Process ids whose real user id is in `uids`."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid_line = next(line for line in status.read_text().splitlines() if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if int(uid_line.split()[1]) in uids:
            found.append(int(status.parent.name))
    return found


def zombie_children() -> list[int]:
    """Our own children that have exited but were never reaped."""
    me = os.getpid()
    zombies = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            zombies.append(int(entry.parent.name))
    return zombies


def test_a_correct_program_passes_with_its_output(guarded: Sandbox) -> None:
    result = guarded.run("def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('ok', add(1, 1))")
    assert result.status == "passed" and result.stdout == "ok 2\n" and result.error == ""
    assert "rlimits" in result.isolation and "guard" in result.isolation


def test_a_failing_assert_fails_with_the_error_text(guarded: Sandbox) -> None:
    result = guarded.run("assert sorted([3, 1]) == [3, 1], 'not sorted'")
    assert result.status == "failed" and "AssertionError: not sorted" in result.error


def test_invalid_python_is_a_result_not_a_crash(guarded: Sandbox) -> None:
    result = guarded.run("def f(:\n    return")
    assert result.status == "failed" and "SyntaxError" in result.error


def test_an_infinite_loop_times_out_and_leaves_no_zombie(guarded: Sandbox) -> None:
    result = guarded.run("print('started')\nwhile True:\n    pass")
    assert result.status == "timeout" and result.stdout == "started\n"
    assert LIMITS.timeout <= result.seconds < LIMITS.timeout + 2
    assert zombie_children() == []


def test_a_program_that_never_returns_times_out(guarded: Sandbox) -> None:
    result = guarded.run("import time\ntime.sleep(3600)")
    assert result.status == "timeout" and result.seconds < LIMITS.timeout + 2


FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"


def test_a_fork_bomb_is_refused_by_the_guard(guarded: Sandbox) -> None:
    result = guarded.run(FORK_BOMB)
    assert result.status == "refused" and "os.fork" in result.error


def test_a_fork_bomb_is_contained_by_the_kernel(kernel: Sandbox) -> None:
    # The process limit stops the bomb at LIMITS.processes; the timeout kills the namespace, and with it all of them.
    counts: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            counts.append(len(processes_of_users(kernel.uids)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = kernel.run(FORK_BOMB)
    done.set()
    watcher.join()
    assert result.status == "timeout" and max(counts) <= LIMITS.processes
    assert processes_of_users(kernel.uids) == [] and zombie_children() == []


MEMORY_BOMB = "chunks = []\nwhile True:\n    chunks.append(bytearray(2**24))"


def test_a_memory_bomb_crashes_at_the_memory_limit(guarded: Sandbox) -> None:
    result = guarded.run(MEMORY_BOMB)
    assert result.status == "crashed" and "out of memory" in result.error


def test_writing_outside_the_folder_is_refused(guarded: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = guarded.run(f"open({str(target)!r}, 'w').write('x')")
    assert result.status == "refused" and not target.exists()


def test_writing_outside_the_folder_hits_a_read_only_file_system(kernel: Sandbox) -> None:
    target = Path("/tmp") / f"minigpt-escaped-{uuid.uuid4().hex}"  # /tmp is writable by everyone, but not here
    result = kernel.run(f"open({str(target)!r}, 'w').write('x')")
    assert result.status == "failed" and "Read-only file system" in result.error and not target.exists()


def test_writing_inside_the_folder_works(guarded: Sandbox) -> None:
    result = guarded.run("open('notes.txt', 'w').write('x')\nprint(open('notes.txt').read())")
    assert result.status == "passed" and result.stdout == "x\n"


@pytest.fixture
def secret_in_home() -> Path:
    path = Path.home() / f".minigpt-sandbox-secret-{uuid.uuid4().hex}"
    path.write_text("token-123")
    path.chmod(0o600)
    yield path
    path.unlink()


def test_reading_a_file_in_the_home_is_refused(guarded: Sandbox, secret_in_home: Path) -> None:
    result = guarded.run(f"print(open({str(secret_in_home)!r}).read())")
    assert result.status == "refused" and "token-123" not in result.stdout


def test_reading_a_file_in_the_home_is_denied_by_the_kernel(kernel: Sandbox, secret_in_home: Path) -> None:
    result = kernel.run(f"print(open({str(secret_in_home)!r}).read())")
    assert result.status == "failed" and "PermissionError" in result.error and "token-123" not in result.stdout


@pytest.fixture
def listener() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.3)
    yield server
    server.close()


def connect_to(server: socket.socket) -> str:
    return (
        f"import socket\nsocket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=1).sendall(b'hi')"
    )


def assert_nobody_connected(server: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        server.accept()


def test_a_network_socket_is_refused(guarded: Sandbox, listener: socket.socket) -> None:
    result = guarded.run(connect_to(listener))
    assert result.status == "refused" and "socket" in result.error
    assert_nobody_connected(listener)


def test_the_network_namespace_has_no_route_even_to_localhost(kernel: Sandbox, listener: socket.socket) -> None:
    result = kernel.run(connect_to(listener))
    assert result.status == "failed" and "Network is unreachable" in result.error
    assert_nobody_connected(listener)


def kill_parent_source() -> str:
    return f"import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill({os.getpid()}, signal.SIGKILL)"


def test_killing_the_parent_is_refused(guarded: Sandbox) -> None:
    result = guarded.run(kill_parent_source())
    assert result.status == "refused" and "os.kill" in result.error  # and this test process is still alive


def test_killing_the_parent_cannot_reach_it_from_a_pid_namespace(kernel: Sandbox) -> None:
    # In its own PID namespace the sample's parent is pid 0 (outside) and our pid names nothing it can see.
    result = kernel.run(kill_parent_source())
    assert result.status == "failed" and "ProcessLookupError" in result.error


def leave_child_source(marker: str) -> str:
    return f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\nprint('bye')"


def test_leaving_a_child_behind_is_refused(guarded: Sandbox) -> None:
    result = guarded.run(leave_child_source("987.5"))
    assert result.status == "refused" and processes_matching("sleep 987.5") == []


def test_a_child_left_behind_dies_with_its_namespace(kernel: Sandbox) -> None:
    result = kernel.run(leave_child_source("987.25"))
    assert result.status == "passed" and result.stdout == "bye\n"
    assert processes_matching("sleep 987.25") == []


def test_megabytes_of_output_are_truncated(guarded: Sandbox) -> None:
    result = guarded.run("import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 1000 + '\\n')")
    assert result.status == "passed" and result.truncated and "bytes dropped" in result.stdout
    assert len(result.stdout) < LIMITS.max_output_bytes + 100 and result.stdout.endswith("x" * 1000 + "\n")


def test_run_many_runs_in_parallel_and_keeps_the_order(guarded: Sandbox) -> None:
    sources = [f"assert {i} % 3 != 0\nprint({i})" for i in range(6)]
    results = guarded.run_many(sources, workers=3)
    assert [r.status for r in results] == ["failed", "passed", "passed", "failed", "passed", "passed"]
    assert [r.stdout for r in results][1] == "1\n"


def test_no_isolation_at_all_is_refused() -> None:
    with pytest.raises(ConfigError, match="guard=false"):
        Sandbox(LIMITS, "process", guard=False)


def test_the_fork_server_runs_at_the_process_level_only() -> None:
    with pytest.raises(ConfigError, match="start='spawn'"):
        Sandbox(LIMITS, "process", start="spawn")
    if namespaces_work():
        with pytest.raises(ConfigError, match="start=fork"):
            Sandbox(LIMITS, "namespaces", start="fork")


def test_a_killed_fork_server_is_a_result_and_is_restarted() -> None:
    sandbox = Sandbox(LIMITS, "process", start="fork")
    assert sandbox.run("print(1)").stdout == "1\n"
    server = sandbox._servers[0]
    server.process.kill()
    server.process.wait()
    assert sandbox.run("print(2)").stdout == "2\n"  # a fresh server took over
    sandbox.close()


def test_each_worker_keeps_one_fork_server() -> None:
    sandbox = Sandbox(LIMITS, "process", start="fork")
    results = sandbox.run_many([f"print({i})" for i in range(8)], workers=2)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]
    assert len(sandbox._servers) <= 2 and all("forked" in r.isolation for r in results)  # not one per sample
    sandbox.close()
