"""Scrub personal data from a text file before training, with a report of what was removed.

    python -m minigpt.alignment.scrub input=notes.txt out=notes.clean.txt

Every e-mail address, phone number, Luhn-valid card number and API key (`minigpt.alignment.pii`) is
replaced by `mask`; `<out>.report.json` lists the count of each kind and every removal with its line, so
that a person can check what went (a false positive costs a number in the corpus, a false negative a leak).
Canary exposure (`minigpt.alignment.canary`) measures what scrubbing buys: a phone number planted in the
training text is memorised; scrubbed, it is not.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from minigpt.alignment.pii import scrub
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text


def scrub_lines(text: str, mask: str = "") -> tuple[str, dict[str, Any]]:
    """The scrubbed text and its report: {"removed": {kind: count}, "lines": lines changed, "items": [...]}."""
    lines, items = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        clean, found = scrub(line, mask)
        lines.append(clean)
        items += [{"line": number, "kind": m.kind, "text": m.text} for m in found]
    counts = Counter(item["kind"] for item in items)
    report = {"removed": dict(sorted(counts.items())), "lines": len({i["line"] for i in items}), "items": items}
    return "\n".join(lines), report


def main(cfg: DictConfig) -> dict[str, Any]:
    """Scrub `cfg.input` into `cfg.out` and write the report beside it (`conf/scrub.yaml`)."""
    source = Path(cfg.input).expanduser()
    if not source.is_file():
        raise ConfigError(f"input={source} is not a file; point it at the text file to scrub.")
    text, report = scrub_lines(source.read_text(encoding="utf-8"), cfg.mask)
    out = Path(cfg.out).expanduser()
    atomic_write_text(out, text)
    atomic_write_text(out.with_name(out.name + ".report.json"), json.dumps(report, indent=1))
    print(f"removed {sum(report['removed'].values())} items {report['removed']} from {report['lines']} lines → {out}")
    return report


if __name__ == "__main__":
    from minigpt.cli.command import command

    command("scrub")(main)()
