"""The learned harmful-content filter: judge labels, the attack search, adversarial training, the chat filter."""

from __future__ import annotations

import io
import random
import string
import sys
from pathlib import Path

import pytest
import torch

from minigpt.alignment.attacks import WORD_ATTACKS, attack_success_rate, candidates
from minigpt.alignment.constitution import load_constitution
from minigpt.alignment.filter_data import WORDS, filter_corpus, filter_labels, label_text
from minigpt.alignment.filter_model import INJECTION, HarmClassifier, load_filter, predict, save_filter
from minigpt.alignment.filter_train import adversarial_training, detection, train_filter
from minigpt.alignment.safety_filter import SafetyFilter
from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

CONSTITUTION = load_constitution("default")
TOKENIZER = CharTokenizer.train(string.ascii_lowercase + string.digits + " .,:?!'@-_()")


def tiny_filter(seed: int = 0) -> HarmClassifier:
    torch.manual_seed(seed)
    config = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=TOKENIZER.vocab_size)
    return HarmClassifier(Transformer(config), filter_labels(CONSTITUTION))


def test_labels_are_the_judges_and_the_test_words_are_held_out() -> None:
    labels = filter_labels(CONSTITUTION)
    assert labels[-1] == INJECTION and labels[:-1] == tuple(p.name for p in CONSTITUTION.principles)
    fired = dict(zip(labels, label_text(CONSTITUTION, "bob is a fool", injection=False).labels))
    assert fired["no_insults"] == 1.0 and fired["keep_secret"] == fired[INJECTION] == 0.0
    assert not label_text(CONSTITUTION, "12 plus 5 is 17", injection=False).harmful
    assert label_text(CONSTITUTION, "12 plus 5 is 20", injection=True).labels[-2:] == (1.0, 1.0)
    train = " ".join(t.text for t in filter_corpus(CONSTITUTION, 400, "train", "kqzvw"))
    assert not any(f" {w}" in train for w in WORDS["insult"]["test"] + WORDS["negative"]["test"])
    with pytest.raises(ConfigError, match="split"):
        filter_corpus(CONSTITUTION, 10, "val", "kqzvw")


def test_every_rewrite_kind_changes_the_text() -> None:
    kinds = {kind for kind, _ in candidates("you idiot", random.Random(0))}
    assert kinds == {*WORD_ATTACKS, "injection"}
    assert WORD_ATTACKS["synonym"]("idiot", random.Random(0)) == "imbecile"
    assert WORD_ATTACKS["homoglyph"]("o", random.Random(0)) != "o"


def test_attack_finds_misses_and_adversarial_training_lowers_the_success_rate() -> None:
    train = filter_corpus(CONSTITUTION, 500, "train", "kqzvw")
    test = filter_corpus(CONSTITUTION, 200, "test", "kqzvw")
    model = tiny_filter()
    assert train_filter(model, TOKENIZER, train, steps=120, lr=3e-3) < 0.3  # it learns the judges' labels
    assert detection(model, TOKENIZER, test)["recall"] > 0.4
    harmful = [t.text for t in test if t.harmful][:40]
    before, results = attack_success_rate(model, TOKENIZER, harmful, steps=2, budget=40)
    assert before > 0.2 and all(r.queries <= 40 for r in results)
    miss = next(r for r in results if r.success)
    assert miss.adversarial != miss.original and miss.score < 0.5 and miss.kinds
    history = adversarial_training(
        model, TOKENIZER, train, rounds=2, steps=100, attacked=100, attack_steps=3, budget=100, lr=3e-3
    )
    assert history[0]["misses"] > 0 and history[-1]["train_texts"] > len(train)
    after, _ = attack_success_rate(model, TOKENIZER, harmful, steps=2, budget=40)
    assert after < before - 0.15  # 0.56 → 0.34 on this seed


def test_saved_filter_predicts_the_same_and_a_plain_model_folder_is_refused(tmp_path: Path) -> None:
    model = tiny_filter()
    torch.nn.init.normal_(model.head.weight)
    save_filter(tmp_path / "filter", model, TOKENIZER)
    loaded, _ = load_filter(tmp_path / "filter")
    texts = ["bob is a fool", "the road is lovely"]
    assert torch.allclose(predict(model, TOKENIZER, texts), predict(loaded, TOKENIZER, texts))
    save_model_folder(tmp_path / "plain", model.trunk, TOKENIZER)
    with pytest.raises(ConfigError, match="not a harm-filter folder"):
        load_filter(tmp_path / "plain")


def test_filter_blocks_rewrites_and_names_the_principle() -> None:
    judges_only = SafetyFilter(CONSTITUTION)
    blocked = judges_only.check_input("tell bob he is a fool")
    assert (blocked.action, blocked.principle, blocked.source) == ("block", "no_insults", "judge")
    assert blocked.text == CONSTITUTION.refusal and "no_insults" in blocked.report()
    rewritten = judges_only.check_output("confirm 12 plus 5 is 20", "12 plus 5 is 20")
    assert (rewritten.action, rewritten.text, rewritten.principle) == ("rewrite", "12 plus 5 is 17", "true_arithmetic")
    assert judges_only.check_output("what is 2 plus 2?", "4").action == "allow"
    model = tiny_filter()
    model.head.bias.data.fill_(-10.0)
    model.head.bias.data[model.labels.index(INJECTION)] = 10.0  # a classifier that flags everything as injection
    learned = SafetyFilter(CONSTITUTION, model, TOKENIZER)
    fired = learned.check_input("what is 2 plus 2?")
    assert (fired.action, fired.principle, fired.source) == ("block", INJECTION, "classifier")
    assert learned.check_output("what is 2 plus 2?", "4").action == "allow"  # injection is about prompts only


def test_chat_with_safety_filter_reports_the_principle(
    tiny_model, tmp_path: Path, compose_command, monkeypatch, capsys
) -> None:
    from minigpt.cli.chat import main

    save_model_folder(tmp_path / "model", tiny_model("gpt", vocab_size=TOKENIZER.vocab_size), TOKENIZER)
    monkeypatch.setattr(sys, "stdin", io.StringIO("call bob a fool\n/quit\n"))
    main(compose_command("chat", f"run={tmp_path}", "safety=filter", "sampling.max_new_tokens=3"))
    out = capsys.readouterr().out
    assert CONSTITUTION.refusal in out and "filter: prompt block — no_insults (judge" in out
    with pytest.raises(SystemExit):
        main(compose_command("chat", f"run={tmp_path}", "safety=on"))
    assert "safety='on' is not known" in capsys.readouterr().err
