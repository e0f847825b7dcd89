"""The corpus's text kinds: numbers as words (known inputs), task sentences (drawn from the task suite, replies that
the task's own scorer accepts), and splits that are disjoint in text as well as in voices and noise."""

from __future__ import annotations

import numpy as np
import pytest

from minigpt.data.speech.example import SpeechExample
from minigpt.data.speech.numbers import SpokenNumbers, number_to_words
from minigpt.data.speech.sentences import SpokenSentences, spoken_form
from minigpt.evaluation.speech import speech_scores
from minigpt.tasks.arithmetic import Arithmetic
from minigpt.tasks.base import split_of
from minigpt.tasks.reversal import Reversal
from minigpt.tasks.sorting import Sorting
from minigpt.utils.errors import ConfigError

KNOWN = {
    0: "zero",
    7: "seven",
    13: "thirteen",
    40: "forty",
    99: "ninety nine",
    100: "one hundred",
    101: "one hundred one",
    1204: "one thousand two hundred four",
    1234: "one thousand two hundred thirty four",
    20_000: "twenty thousand",
    1_000_000: "one million",
    2_000_015: "two million fifteen",
    987_654_321_012: "nine hundred eighty seven billion six hundred fifty four million three hundred twenty one "
    "thousand twelve",
}


def test_number_to_words_on_known_inputs():
    for n, words in KNOWN.items():
        assert number_to_words(n) == words, n
    with pytest.raises(ValueError):
        number_to_words(-1)


def test_spoken_numbers_say_the_number_and_hold_out_numbers_voices_and_noise():
    source = SpokenNumbers(max_value=9999)
    split_numbers = {}
    for split in ("train", "test"):
        recipes = [source.utterance(split, i) for i in range(300)]
        for recipe, text, language, *_ in recipes:
            assert recipe.text == number_to_words(int(text)) and language == "en"
            assert split_of(source.name, text) == split
        split_numbers[split] = {text for _, text, *_ in recipes}
    assert not split_numbers["train"] & split_numbers["test"]
    train = [source.utterance("train", i)[0] for i in range(300)]
    assert not {r.voice for r in train} & set(source.held_out_voices)
    assert source.held_out_snr not in {r.snr_db for r in train}
    assert SpokenNumbers(transcript="words").utterance("val", 3)[1] == source.utterance("val", 3)[0].text
    with pytest.raises(ConfigError, match="English only"):
        SpokenNumbers(languages=["fr"])


def test_spoken_form_says_numbers_and_spells_random_letters():
    assert spoken_form("what is 12 plus 34?") == "what is twelve plus thirty four"
    assert spoken_form("reverse: stone") == "reverse ess tee oh en ee"
    assert spoken_form("sort: 42 7 100") == "sort forty two seven one hundred"
    assert spoken_form("enots") == "ee en oh tee ess"


def test_sentences_come_from_the_task_suite_with_disjoint_splits():
    tasks = {"arithmetic": Arithmetic(), "reversal": Reversal(), "sorting": Sorting()}
    prompts, replies = SpokenSentences(tasks, parts=["prompt"]), SpokenSentences(tasks, parts=["reply"])
    seen: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        seen[split] = set()
        for i in range(150):
            recipe, prompt, *_ = prompts.utterance(split, i)
            reply = replies.utterance(split, i)[1]  # the same draw, the other side of the example
            task = next(t for t in tasks.values() if _owns(t, prompt))
            assert task.split_of(prompt) == split  # the task's own split of its prompts
            assert task.score(prompt, reply) == 1.0  # the reply is the task's gold answer to the prompt
            assert recipe.text == spoken_form(prompt)
            assert prompts.draw(split, i)[1].kind == f"{task.name} prompt"  # what eval=speech groups WER by
            assert replies.draw(split, i)[1].kind == f"{task.name} reply"
            seen[split].add(prompt)
        assert {_kind(p) for p in seen[split]} == {"what", "sort:", "reverse:"}  # all three tasks
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    with pytest.raises(ConfigError, match="parts"):
        SpokenSentences(tasks, parts=["answer"])


def test_speech_scores_group_by_kind_of_text():
    clip = np.zeros(160, dtype=np.float32)
    examples = [SpeechExample(clip, "what is 1 plus 2?", kind="arithmetic prompt"), SpeechExample(clip, "3", kind="x")]
    scores = speech_scores(examples, {"lm": ["what is 1 plus 3?", "3"]})["lm"]["kind"]
    assert scores["arithmetic prompt"]["wer"] == pytest.approx(1 / 5) and scores["x"]["wer"] == 0.0


def _kind(prompt: str) -> str:
    return prompt.split()[0]


def _owns(task: Arithmetic | Reversal | Sorting, prompt: str) -> bool:
    """Whether `prompt` is of `task`'s form (its scorer parses it)."""
    try:
        task.score(prompt, "")
    except ValueError:
        return False
    return True
