"""Run one Python file in the sandbox and print what happened.

    python -m minigpt.code.run_sandboxed file=file.py timeout=3 memory=256MB
    python -m minigpt.code.run_sandboxed file=file.py isolation=namespaces guard=false   # the kernel's layer alone

Prints the status (passed / failed / timeout / crashed / refused), the isolation that was active, the
error and the captured output. The exit status is 0 whatever the sample did (the sample's outcome is the
printed result); a bad option is one sentence and status 2.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from minigpt.cli.command import command
from minigpt.code.execution import Limits, Result, Sandbox
from minigpt.utils.errors import ConfigError
from minigpt.utils.sizes import parse_bytes


def run_file(cfg: DictConfig) -> Result:
    """Run `cfg.file` under the limits and isolation of `cfg`."""
    path = Path(str(cfg.file))
    if not path.is_file():
        raise ConfigError(f"file={cfg.file} is not a file; give the path of a Python file, e.g. file=solution.py.")
    if not float(cfg.timeout) > 0:
        raise ConfigError(f"timeout={cfg.timeout} must be a positive number of seconds, e.g. timeout=3.")
    limits = Limits(timeout=float(cfg.timeout), memory_bytes=int(parse_bytes(cfg.memory, "memory")))
    sandbox = Sandbox(limits, str(cfg.isolation), bool(cfg.guard))
    return sandbox.run(path.read_text(encoding="utf-8", errors="replace"))


@command("run_sandboxed")
def main(cfg: DictConfig) -> Result:
    """Run the file and print its result."""
    result = run_file(cfg)
    print(f"status: {result.status} ({result.seconds:.2f} s, isolation {result.isolation})")
    if result.error:
        print(f"error: {result.error}")
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            print(f"--- {name}{' (truncated)' if result.truncated else ''} ---\n{text.rstrip()}")
    return result


if __name__ == "__main__":
    main()
