"""Preference JSONL: both formats parse, bad lines are named, batches mask prompt and padding; pairs from
samples drop ties and keep the margin."""

import json

import pytest
import torch

from minigpt.data.preference_pairs import best_worst_pair, make_pairs
from minigpt.data.preferences import PreferenceDataModule, parse_preference, read_preferences
from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.tasks.arithmetic import Arithmetic
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import END_OF_TURN
from minigpt.utils.errors import ConfigError


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_plain_and_messages_forms_parse_to_the_same_pair():
    plain = parse_preference({"prompt": "hi", "chosen": "hello", "rejected": "no", "margin": 0.5})
    messages = parse_preference({
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "no"}], "margin": 0.5,
    })  # fmt: skip
    assert plain == messages
    assert plain.prompt == [{"role": "user", "content": "hi"}] and plain.margin == 0.5


@pytest.mark.parametrize(
    "record, reason",
    [
        ({"prompt": "hi", "chosen": "a"}, '"rejected"'),
        ({"prompt": "hi", "chosen": "a", "rejected": "a"}, "the same reply"),
        ({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"}, "role 'robot'"),
        ({"prompt": "hi", "chosen": "a", "rejected": "b", "margin": -1}, '"margin"'),
        ({"prompt": "hi", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}, '"chosen"'),
    ],
)
def test_bad_lines_name_the_file_line_and_reason(tmp_path, record, reason):
    path = write(tmp_path / "p.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, record])
    with pytest.raises(ConfigError, match=rf"p.jsonl line 2: .*{reason}"):
        read_preferences(str(path))


def test_batches_mask_prompt_and_padding(tmp_path):
    tokenizer = CharTokenizer.train("abcdefgh ")
    path = write(tmp_path / "p.jsonl", [{"prompt": "ab", "chosen": "cde", "rejected": "f"}] * 3)
    dm = PreferenceDataModule(path=str(path), seq_len=32, batch_size=2, val_fraction=0.3)
    dm.attach_tokenizer(tokenizer)
    batch = next(iter(dm.val_dataloader()))
    ids, mask, lengths = batch["input_ids"], batch["completion_mask"], batch["lengths"]
    assert ids.shape[0] == 2  # one pair: its chosen row, then its rejected row
    end = tokenizer.special_id(END_OF_TURN)
    # Masked tokens are exactly the reply and its <|end|>; the rejected row's padding is not included.
    assert ids[0][mask[0]].tolist() == tokenizer.encode("cde") + [end]
    assert ids[1][mask[1]].tolist() == tokenizer.encode("f") + [end]
    assert lengths.tolist() == [ids.shape[1], ids.shape[1] - 2] and not mask[1, lengths[1] :].any()


def test_too_long_pair_is_refused(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"prompt": "ab" * 20, "chosen": "c", "rejected": "d"}] * 2)
    dm = PreferenceDataModule(path=str(path), seq_len=16)
    dm.attach_tokenizer(CharTokenizer.train("abcd"))
    with pytest.raises(ConfigError, match="data.seq_len=16"):
        dm.prepare()


def test_best_worst_pair_drops_ties_and_keeps_the_margin():
    task = Arithmetic()
    assert best_worst_pair("what is 2 plus 3?", ["6", "7", "6"], task) is None  # all wrong: a tie
    pair = best_worst_pair("what is 2 plus 3?", ["6", "5", "7"], task)
    assert pair is not None and pair["chosen"] == "5" and pair["margin"] == 1.0 and pair["task"] == "arithmetic"


def test_make_pairs_from_a_model_with_the_gold_answer(tmp_path):
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train("0123456789 whatisplu?")
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=48, vocab_size=tokenizer.vocab_size))
    folder = save_model_folder(tmp_path / "m", model, tokenizer)
    task = Arithmetic(max_digits=1)
    pairs = make_pairs(str(folder), task, n=10, k=2, max_new_tokens=4, with_answer=True)
    # A random model is (almost) never right, so the gold answer wins nearly every prompt.
    assert len(pairs) >= 8
    for pair in pairs:
        assert task.score(pair["prompt"], pair["chosen"]) == 1.0 > task.score(pair["prompt"], pair["rejected"])
    write(tmp_path / "p.jsonl", pairs)
    assert len(read_preferences(str(tmp_path / "p.jsonl"))) == len(pairs)
