"""Programming languages of the code data: a tag per document and per problem, and whether it is run.

Every code document and problem carries its language. The tag is the document's first line, a comment in
that language, and it says whether code in that language is executed here:

    # language: python (executed in the sandbox)
    // language: javascript (not executed: the sandbox runs Python only; node is installed)

Only Python is executed: the sandbox's guard and boot code are Python (`minigpt.code.sandbox_boot`).
A second language's runtime may be installed (node, for JavaScript); the tag records that too, so a
reader knows whether an executed scorer could exist on this machine, but nothing here runs it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from minigpt.utils.errors import ConfigError


@dataclass(frozen=True)
class Language:
    """A language: its name, file suffix, line-comment marker and the runtime that would run it."""

    name: str
    suffix: str
    comment: str
    runtime: str

    @property
    def executed(self) -> bool:
        """Whether the sandbox runs code in this language (Python only)."""
        return self.name == "python"

    def runtime_installed(self) -> bool:
        """Whether the language's runtime is on this machine's PATH."""
        return shutil.which(self.runtime) is not None

    def tag(self) -> str:
        """The document's first line: the language, and whether (and why not) it is executed."""
        if self.executed:
            return f"{self.comment} language: {self.name} (executed in the sandbox)"
        installed = "installed" if self.runtime_installed() else "not installed"
        why = f"the sandbox runs Python only; {self.runtime} is {installed}"
        return f"{self.comment} language: {self.name} (not executed: {why})"


LANGUAGES = {
    language.name: language
    for language in (Language("python", ".py", "#", "python3"), Language("javascript", ".js", "//", "node"))
}


def get_language(name: str) -> Language:
    """A language by name; a clear error for an unknown one."""
    if name not in LANGUAGES:
        raise ConfigError(f"language={name!r} is unknown; use one of {sorted(LANGUAGES)}.")
    return LANGUAGES[name]
