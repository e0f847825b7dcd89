"""Prompt data for RL: task splits stay disjoint, JSONL errors name the line, prompts end ready to answer."""

import json

import pytest

from minigpt.data.prompts import PromptDataModule
from minigpt.tasks import get_task
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import END_OF_TURN, add_chat_tokens
from minigpt.utils.errors import ConfigError


def tokenizer() -> CharTokenizer:
    return CharTokenizer.train("abcdefghijklmnopqrstuvwxyz0123456789 ?:")


def test_task_prompts_split_and_render_for_generation():
    dm = PromptDataModule(tasks={"arithmetic": get_task("arithmetic")}, num_train=40, num_val=8, batch_size=16)
    tok = tokenizer()
    dm.attach_tokenizer(tok)
    splits = dm.prepare()
    train, val = {i["prompt"] for i in splits["train"]}, {i["prompt"] for i in splits["val"]}
    assert len(train) == 40 and len(val) == 8 and not train & val
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["prompt"]) == 16 and set(batch["task"]) == {"arithmetic"}
    assert all(ids[-1] == tok.special_id("<|assistant|>") for ids in batch["prompt_ids"])
    assert tok.decode(batch["prompt_ids"][0], skip_special=True) == batch["prompt"][0]


def test_jsonl_prompts_and_line_numbers_in_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "abc"}\n{"messages": [{"role": "user", "content": "dd"}]}\n\n{"prompt": "ee"}\n')
    dm = PromptDataModule(path=str(path), val_fraction=0.3)
    dm.attach_tokenizer(tokenizer())
    assert sorted(t for s in ("train", "val") for t, _ in dm.prompts(s)) == ["abc", "dd", "ee"]
    two_turns = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    path.write_text('{"prompt": "abc"}\n' + json.dumps(two_turns) + "\n")
    with pytest.raises(ConfigError, match="line 2.*exactly one user message"):
        PromptDataModule(path=str(path)).prompts("train")
    path.write_text(json.dumps({"question": "abc"}) + "\n")
    with pytest.raises(ConfigError, match="line 1"):
        PromptDataModule(path=str(path)).prompts("train")


def test_unrepresentable_prompts_and_empty_sources_are_refused(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ABC"}\n{"prompt": "abc"}\n')
    dm = PromptDataModule(path=str(path), val_fraction=0.5)
    dm.attach_tokenizer(tokenizer())
    with pytest.raises(ConfigError, match="not in the tokenizer's vocabulary"):
        dm.prepare()
    with pytest.raises(ConfigError, match="data.tasks is empty"):
        PromptDataModule()


def test_demonstrations_train_on_the_answer_only():
    dm = PromptDataModule(tasks={"arithmetic": get_task("arithmetic")}, num_train=8, num_val=2)
    tok = tokenizer()
    add_chat_tokens(tok)
    dm.attach_tokenizer(tok)
    batch = next(dm.demonstrations(4))
    targets = batch["targets"][0]
    trained = [int(t) for t in targets if t >= 0]
    assert trained[-1] == tok.special_id(END_OF_TURN)
    assert tok.decode(trained[:-1]).isdigit()  # the sum, nothing of the question
