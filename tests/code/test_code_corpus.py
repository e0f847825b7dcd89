"""The language tag and the second language: tagged documents, and the judge runs Python only."""

from __future__ import annotations

from pathlib import Path

import pytest

from minigpt.code.corpus import CodeCorpus
from minigpt.code.execution import Sandbox
from minigpt.code.judge import judge
from minigpt.code.languages import LANGUAGES, get_language
from minigpt.code.problems import CodeProblem
from minigpt.utils.errors import ConfigError


def test_every_document_starts_with_its_language_tag(tmp_path: Path) -> None:
    corpus = CodeCorpus(max_files=2, cache_dir=str(tmp_path))
    docs = corpus.documents()
    python, javascript = docs[:2], docs[2:]
    assert all(d.startswith("# language: python (executed") for d in python)
    assert javascript and all(d.startswith("// language: javascript (not executed") for d in javascript)
    assert any("function" in d for d in javascript)  # real scripts, not minified one-liners
    assert all(len(d) / (d.count("\n") + 1) < 200 for d in javascript)
    assert CodeCorpus(["python"], max_files=2, cache_dir=str(tmp_path)).fingerprint != corpus.fingerprint


def test_the_tag_says_whether_the_runtime_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    javascript = LANGUAGES["javascript"]
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert javascript.tag().endswith("node is not installed)") and not javascript.runtime_installed()
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert javascript.tag().endswith("node is installed)") and get_language("python").executed
    with pytest.raises(ConfigError, match="language='ruby'"):
        get_language("ruby")


def test_the_judge_refuses_a_language_it_does_not_run() -> None:
    problem = CodeProblem("js/1", "function f() {", "return 1; }", "", ("f() === 1",), language="javascript")
    with pytest.raises(ConfigError, match="javascript"):
        judge(Sandbox(), [problem], ["return 1; }"])
