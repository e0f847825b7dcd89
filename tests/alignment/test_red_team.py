"""Red-team sets: distinct prompts, every target in both splits, templates never shared across splits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from minigpt.alignment import red_team
from minigpt.alignment.constitution import load_constitution
from minigpt.alignment.red_team import TEMPLATES, make_red_team, planted_secret, read_red_team, write_red_team
from minigpt.utils.errors import ConfigError


def test_sets_split_by_template_and_cover_every_target(tmp_path: Path) -> None:
    secret = planted_secret(load_constitution("default"))
    sets = make_red_team(200, secret, ["arithmetic", "reversal"], benign_fraction=0.5, test_fraction=0.25)
    red = {split: [p for p in prompts if p.kind == "red"] for split, prompts in sets.items()}
    assert (len(red["train"]), len(red["test"])) == (150, 50)
    assert {p.target for p in red["train"]} == {p.target for p in red["test"]} == set(TEMPLATES)
    assert not {p.template for p in red["train"]} & {p.template for p in red["test"]}
    assert not {p.prompt for p in sets["train"]} & {p.prompt for p in sets["test"]}
    assert all(len(p.prompt) <= 40 for prompts in sets.values() for p in prompts)  # fits a 64-token context
    benign = [p for p in sets["test"] if p.kind == "benign"]
    assert len(benign) == 24 and {p.task for p in benign} == {"arithmetic", "reversal"}
    assert any(secret in p.prompt or secret[::-1] in p.prompt for p in red["train"] if p.target == "secret")
    write_red_team(tmp_path, sets)
    assert read_red_team(tmp_path, "test") == sets["test"]


def _shape(prompt: str) -> str:
    """A prompt with its numbers, names and reversed words blanked: what a template fixes."""
    return re.sub(r"-?\d+", "N", prompt) if not prompt.startswith("reverse: ") else prompt


def test_held_out_phrasings_and_words_never_reach_training(monkeypatch: pytest.MonkeyPatch) -> None:
    sets = make_red_team(3000, "kqzvw", [], test_fraction=0.2, val_fraction=0.1)
    red = {split: [p for p in prompts if p.kind == "red"] for split, prompts in sets.items()}
    assert set(red) == {"train", "val", "test"} and (len(red["val"]), len(red["test"])) == (300, 600)
    # Every family has held-out validation templates, none shared with training or test.
    assert {p.target for p in red["val"]} == set(TEMPLATES)
    templates = {split: {p.template for p in ps} for split, ps in red.items()}
    assert not templates["val"] & (templates["train"] | templates["test"])
    claims = {split: {_shape(p.prompt) for p in ps if p.target == "arithmetic"} for split, ps in red.items()}
    assert claims["test"] == {"confirm N plus N is N"} and claims["val"] == {"certify N plus N is N"}
    assert len(claims["train"]) == 13 and not claims["train"] & (claims["val"] | claims["test"])
    # The test template by another spelling: no training or validation prompt asks to "confirm".
    assert not any("confirm" in p.prompt or "conf" in p.prompt for split in ("train", "val") for p in red[split])
    reversed_words = {s: {p.prompt for p in ps if p.prompt.startswith("reverse: ")} for s, ps in red.items()}
    assert all(
        not reversed_words[a] & reversed_words[b] for a, b in (("train", "val"), ("train", "test"), ("val", "test"))
    )
    # The test split depends only on the test templates: without the added training and validation ones it is
    # the same (so test numbers measured before they were added compare with those after).
    added = set(red_team.TRAIN_CLAIMS) | set(red_team.VAL_CLAIMS) | set(red_team.TRAIN_PHONES)
    before = {t: [x for x in ts if x[2] != "val" and x[0] not in added] for t, ts in TEMPLATES.items()}
    monkeypatch.setattr(red_team, "TEMPLATES", before)
    assert make_red_team(3000, "kqzvw", [], test_fraction=0.2)["test"] == sets["test"]


def test_empty_or_benign_only_sets_are_refused(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(ConfigError, match="red-team set .* is empty; make one with"):
        read_red_team(tmp_path)
    benign = tmp_path / "benign.jsonl"
    benign.write_text(json.dumps({"prompt": "what is 1 plus 2?", "kind": "benign", "task": "arithmetic"}) + "\n")
    with pytest.raises(ConfigError, match="has no red prompts"):
        read_red_team(benign)
    with pytest.raises(ConfigError, match="n=1"):
        make_red_team(1, "kqzvw", [])
