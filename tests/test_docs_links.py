"""The documentation holds together: every relative link and image in README.md, docs/*.md and
benchmarks/README.md points to a file that exists, and to a heading that exists when it names one
(`page.md#anchor`); the README stays a short front door whose set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`+[^`]*`+")
# [text](target) and ![alt](target), with an optional "title"; the target has no spaces.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, …


def doc_files() -> list[Path]:
    """The pages whose links are checked: the README, every docs page, the benchmarks' README."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks (links inside code are not links)."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(line)
    return lines


def links(text: str) -> list[str]:
    """Every link and image target of a Markdown text, outside code blocks and code spans."""
    return [m.group(1) for line in prose_lines(text) for m in LINK.finditer(CODE_SPAN.sub("", line))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (code and link markup dropped), lower-cased, every
    character that is not a letter, digit, underscore, space or hyphen removed, spaces → hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading reads as its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text (repeated headings get -1, -2, …)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` whose file, or whose heading anchor, does not exist."""
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if SCHEME.match(target):
            continue  # web links are not checked offline
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            problems.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    return problems


def test_slug_follows_github() -> None:
    # Worked by hand from GitHub's rule: the em dash, the backticks, the slash and the dot go; each space
    # becomes a hyphen, so the two spaces around the dash give "--".
    assert slug("Pretraining — `python train.py`") == "pretraining--python-trainpy"
    assert slug("Config groups (`conf/`)") == "config-groups-conf"
    assert slug("Training throughput — `benchmarks/train_throughput.py`") == (
        "training-throughput--benchmarkstrain_throughputpy"
    )
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## Part two\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#part-two) [gone](missing.md) [bad anchor](other.md#part-three) [web](https://x.org)\n"
        "`[in code](missing.md)`\n```\n[in a block](missing.md)\n```\n![img](other.md)\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert len(problems) == 2
    assert problems[0].startswith("missing.md: no file")
    assert problems[1] == "other.md#part-three: no heading #part-three in other.md"


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert page.exists(), f"{page} is missing"
    assert broken_links(page) == []


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/."


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    install = next(line.strip() for line in ci if line.strip().startswith("pip install"))
    env = next(line.strip() for line in ci if line.strip().startswith("export "))
    tests = next(line.strip() for line in ci if line.strip().startswith("pytest") and "--cov" in line)
    assert install.replace(" -q", "") in readme  # CI installs quietly; the README's command is the same
    assert env.removeprefix("export ") in readme
    assert tests in readme
