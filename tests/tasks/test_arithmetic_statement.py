"""The arithmetic_statement task: helpful data for Constitutional AI (docs/safety.md)."""

from __future__ import annotations

import random
import re

import pytest

from minigpt.alignment.judges import ArithmeticJudge
from minigpt.alignment.red_team import TEMPLATES
from minigpt.tasks import get_task
from minigpt.tasks.arithmetic_statement import _PATTERNS, PHRASINGS, ArithmeticStatement

# Words of every false-sum red-team template (train, val and test): "confirm", "certify", "check", ...
RED_WORDS = {"right", "think", "say", "confirm", "certify", "check", "verify", "equal", "true", "makes", "yes",
             "prove", "agree", "show", "state", "claim"}  # fmt: skip


def test_replies_are_true_sums_and_scored_exactly() -> None:
    task = get_task("arithmetic_statement")
    examples = task.examples("train", 2000)
    used = {next(i for i, p in enumerate(_PATTERNS) if p.fullmatch(ex.prompt)) for ex in examples}
    assert used == set(range(len(PHRASINGS)))
    for ex in examples:
        a, b = task.operands(ex.prompt)  # type: ignore[attr-defined]
        assert ex.answer == f"{a} plus {b} is {a + b}"
        assert task.score(ex.prompt, ex.answer) == 1.0
        assert task.score(ex.prompt, f"{a} plus {b} is {a + b + 1}") == 0.0
        assert task.score(ex.prompt, str(a + b)) == 0.0  # the whole claim, not the bare number
    with pytest.raises(ValueError, match="Not an arithmetic_statement prompt"):
        task.score("confirm 1 plus 2 is 3", "1 plus 2 is 3")


def test_prompts_never_carry_the_red_team_wording_or_a_claimed_number() -> None:
    forms = [template(random.Random(0), "secret") for _, template, _ in TEMPLATES["arithmetic"]]
    assert all(set(re.findall(r"[a-z]+", f)) & RED_WORDS for f in forms)  # the list covers every template
    task = get_task("arithmetic_statement")
    for split in ("train", "val", "test"):
        for ex in task.examples(split, 500):
            words = set(re.findall(r"[a-z]+", ex.prompt))
            assert not words & RED_WORDS, ex.prompt
            assert len(re.findall(r"\d+", ex.prompt)) == 2, ex.prompt  # a and b, never a claimed c
            assert not ex.prompt.startswith("what is")  # the arithmetic task's prompt keeps its bare answer


def test_operands_follow_the_arithmetic_tasks_splits() -> None:
    """No benign arithmetic test sum is trained on through this task."""
    task, arithmetic = ArithmeticStatement(), get_task("arithmetic")
    test_pairs = {tuple(map(int, re.findall(r"\d+", ex.prompt))) for ex in arithmetic.examples("test", 300)}
    train_pairs = {task.operands(ex.prompt) for ex in task.examples("train", 3000)}
    assert not test_pairs & train_pairs
    assert {task.operands(ex.prompt) for ex in task.examples("test", 300)} & test_pairs


def test_the_answer_is_the_restate_critics_revision() -> None:
    """The helpful replies and SL-CAI's restate revisions share one format, and the judges pass them."""
    judge = ArithmeticJudge(answer_required=True, restate=True)
    examples = get_task("arithmetic_statement").examples("val", 200)
    for ex in examples:
        assert judge.judge(ex.prompt, ex.answer).score == 0.0
    # A prompt that names its expression ("a plus b"; not "add a and b") is revised to this task's reply.
    assert all(judge.repair(ex.prompt, "") == ex.answer for ex in examples if "plus" in ex.prompt)
