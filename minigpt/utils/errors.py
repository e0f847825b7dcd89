"""The exception types for a user's mistakes, raised before any training starts.

Every command catches `ConfigError` (and so `DataError`) at its entry point and prints the message alone
(`minigpt.cli.command`): the message is what the user reads, so it names the field or file, the value
and the fix, in one sentence.
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A configuration or data problem, described in one sentence: the field, the value and the fix."""


class DataError(ConfigError):
    """A file the user gave is damaged or malformed: the message starts with the file (and line).

    `problem` continues the sentence: after the file's name (`DataError(p, "is damaged; …")` reads
    "p is damaged; …") or, with a line, after "p line 3:". A `ConfigError` too, so that code and tests
    catching configuration mistakes catch bad data as well.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        super().__init__(f"{path} line {line}: {problem}" if line is not None else f"{path} {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem

    def __reduce__(self) -> tuple[type[DataError], tuple[Path, str, int | None]]:
        """Pickle by the constructor's arguments (exceptions cross process boundaries in data loaders)."""
        return type(self), (self.path, self.problem, self.line)
