"""Tasks: deterministic, disjoint splits, gold answers score 1.0 and wrong answers lower."""

import pytest

from minigpt.tasks import get_task, split_of, task_names
from minigpt.utils.errors import ConfigError

WRONG = {
    "arithmetic": lambda ex: str(int(ex.answer) + 1),
    "reversal": lambda ex: ex.prompt.split(": ", 1)[1],  # the string unreversed
    "sorting": lambda ex: " ".join(reversed(ex.answer.split())),
    "sentiment": lambda ex: "is sad and cold and bad",
}


@pytest.mark.parametrize("name", ["arithmetic", "reversal", "sorting", "sentiment"])
def test_gold_answers_score_one_and_wrong_answers_lower(name):
    task = get_task(name)
    for ex in task.examples("test", 50):
        assert task.score(ex.prompt, ex.answer) == 1.0
        assert task.score(ex.prompt, " " + ex.answer + "\n") == 1.0  # surrounding whitespace is not an error
        if WRONG[name](ex) != ex.answer:
            assert task.score(ex.prompt, WRONG[name](ex)) < 1.0
        assert task.score(ex.prompt, "") == 0.0


@pytest.mark.parametrize("name", ["arithmetic", "reversal", "sorting", "sentiment"])
def test_examples_are_deterministic_and_splits_disjoint(name):
    task = get_task(name, seed=3)
    assert task.examples("val", 40) == get_task(name, seed=3).examples("val", 40)
    prompts = {split: {ex.prompt for ex in task.examples(split, 100)} for split in ("train", "val", "test")}
    assert all(len(p) == 100 for p in prompts.values())  # distinct within a split
    assert not prompts["train"] & prompts["val"] and not prompts["train"] & prompts["test"]
    assert not prompts["val"] & prompts["test"]
    # Another seed draws other examples, but each prompt keeps its split.
    other = get_task(name, seed=4).examples("train", 100)
    assert all(split_of(name, ex.prompt) == "train" for ex in other)


def test_known_answers_and_scorers_on_hand_written_cases():
    assert get_task("arithmetic").score("what is 58 plus 8?", "66") == 1.0
    assert get_task("arithmetic").score("what is 58 plus 8?", "67") == 0.0
    assert get_task("reversal").score("reverse: stone", "enots") == 1.0
    assert get_task("sorting").score("sort: 42 7 19", "7  19 42") == 1.0
    assert get_task("sorting").score("sort: 42 7 19", "7 19") == 0.0
    sentiment = get_task("sentiment")
    happy = sentiment.score("happily: the old mill", "is lovely and bright")
    neutral = sentiment.score("happily: the old mill", "is made of stone")
    sad = sentiment.score("happily: the old mill", "is sad and cold and bad")
    assert happy == 1.0 and sad < neutral < happy
    assert neutral == pytest.approx(1 / 1.5)  # VADER compound 0 → 1/(1 + target)


def test_registry_and_bad_options():
    assert set(task_names()) >= {"arithmetic", "reversal", "sorting", "sentiment"}
    with pytest.raises(ConfigError, match="known tasks"):
        get_task("chess")
    with pytest.raises(ConfigError, match="max_digits"):
        get_task("arithmetic", min_digits=3, max_digits=2)
    with pytest.raises(ConfigError, match="fewer"):
        get_task("arithmetic", max_digits=1).examples("test", 500)  # only 100 one-digit sums exist


def test_sentiment_mixed_tone_spreads_gold_scores_and_positive_stays_positive():
    positive, mixed = get_task("sentiment"), get_task("sentiment", tone="mixed")
    assert all(positive.score(ex.prompt, ex.answer) == 1.0 for ex in positive.examples("train", 300))
    scores = [mixed.score(ex.prompt, ex.answer) for ex in mixed.examples("train", 300)]
    # Positive (1.0), neutral (1/1.5) and negative (< 1/1.5) demonstrations, each a sizeable share.
    high = sum(s == 1.0 for s in scores)
    neutral = sum(s == pytest.approx(1 / 1.5) for s in scores)
    low = sum(s < 0.5 for s in scores)
    assert min(high, neutral, low) > 60 and high + neutral + low == len(scores)
    # Lowercase letters and spaces only: every char-level tokenizer of the default corpus covers them.
    assert all(set(ex.answer) <= set("abcdefghijklmnopqrstuvwxyz ") for ex in mixed.examples("train", 300))
    with pytest.raises(ConfigError, match="tone"):
        get_task("sentiment", tone="sad")
