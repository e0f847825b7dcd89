"""AI feedback: soft labels are σ(Δscore / T), pairs are ordered by them, and the constitution is an RL reward."""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

import pytest
import torch

from minigpt.alignment.ai_feedback import label_pair, make_feedback_pairs
from minigpt.alignment.constitution import load_constitution
from minigpt.alignment.feedback import ConstitutionReward, reply_score, soft_label, verified_truth
from minigpt.alignment.red_team import RedTeamPrompt, make_red_team, write_red_team
from minigpt.data.preferences import read_preferences
from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.rl.rewards import build_reward
from minigpt.tasks import Arithmetic
from minigpt.tokenizer.char import CharTokenizer

CONSTITUTION = load_constitution("default")


def test_soft_label_is_the_sigmoid_of_the_score_difference() -> None:
    # Δs = 1 at T = 1: σ(1) = 1 / (1 + e^-1) = 0.7311; at T = 0.25: σ(4) = 0.9820; equal scores: 1/2.
    assert soft_label(0.0, -1.0, 1.0) == pytest.approx(0.7311, abs=1e-4)
    assert soft_label(0.0, -1.0, 0.25) == pytest.approx(0.9820, abs=1e-4)
    assert soft_label(0.3, 0.3) == 0.5 and soft_label(-1.0, 0.0) == pytest.approx(1 - soft_label(0.0, -1.0))


def test_labels_ensemble_the_principles_and_the_task_gold() -> None:
    red = RedTeamPrompt("call bob a fool", "red", "insult")
    polite, rude = "bob is kind", "bob is a sad fool"
    delta = CONSTITUTION.total(red.prompt, rude) - CONSTITUTION.total(red.prompt, polite)
    assert delta > 1.0  # an insult and negative sentiment: two principles add up
    pair = label_pair(CONSTITUTION, red, rude, polite, temperature=0.5, min_confidence=0.1)
    assert pair is not None and (pair["chosen"], pair["rejected"]) == (polite, rude)
    assert pair["soft_label"] == pytest.approx(1 / (1 + math.exp(-delta / 0.5))) and pair["margin"] == pytest.approx(
        delta
    )
    benign = RedTeamPrompt("what is 12 plus 5?", "benign", task="arithmetic")
    # Gold 1 vs a false claim (gold 0, one violation): Δs = 2.
    assert reply_score(CONSTITUTION, {"arithmetic": Arithmetic()}, benign.prompt, "17", "arithmetic") == 1.0
    pair = label_pair(CONSTITUTION, benign, "20", "17", temperature=1.0, min_confidence=0.1)
    assert pair is not None and pair["chosen"] == "17" and pair["soft_label"] == pytest.approx(1 / (1 + math.exp(-2)))
    assert label_pair(CONSTITUTION, red, "bob", "ann", 1.0, 0.1) is None  # a tie teaches nothing


def test_truth_weight_prefers_the_true_sum_to_a_reply_that_claims_nothing() -> None:
    red = RedTeamPrompt("confirm 12 plus 5 is 20", "red", "arithmetic")
    assert verified_truth(red.prompt, "17") == 1.0 and verified_truth(red.prompt, "ppa") == 0.0
    assert verified_truth(red.prompt, "20") == 0.0  # a false claim is no truth
    assert verified_truth(red.prompt, "12 plus 5 is 17") == 1.0 and verified_truth(red.prompt, "12 + 5 = 17") == 1.0
    assert verified_truth(red.prompt, "12 plus 5 is 17, 2 plus 2 is 5") == 0.0  # every claim must hold
    # A true sum nobody asked for earns nothing: the prompt's own expression must be answered.
    assert verified_truth("joe knows kqzvw. tell max", "8 plus 9 is 17") == 0.0
    assert verified_truth(red.prompt, "3 plus 4 is 7") == 0.0
    # The constitution alone sees no difference: neither reply violates anything (the reward hack of DPO).
    assert label_pair(CONSTITUTION, red, "17", "ppa", 1.0, 0.1) is None
    pair = label_pair(CONSTITUTION, red, "ppa", "17", 1.0, 0.1, truth_weight=1.0)
    assert pair is not None and pair["chosen"] == "17" and pair["soft_label"] == pytest.approx(1 / (1 + math.exp(-1)))
    benign = RedTeamPrompt("what is 12 plus 5?", "benign", task="arithmetic")
    plain = label_pair(CONSTITUTION, benign, "20", "17", 1.0, 0.1)
    assert label_pair(CONSTITUTION, benign, "20", "17", 1.0, 0.1, truth_weight=1.0) == plain  # gold covers tasks


def test_constitution_reward_is_registered() -> None:
    reward = build_reward("constitution", None, {"arithmetic": Arithmetic()}, None)
    assert isinstance(reward, ConstitutionReward)
    scores = reward(
        ["what is 1 plus 2?", "call bob a fool", "say it"], ["3", "you fool", "ok"], ["arithmetic", None, None]
    )
    assert scores[0] == 1.0 and scores[1] < -1.0 and scores[2] == 0.0
    # With `stage.truth_weight`, a true answer to a red prompt's sum earns it; a made-up sum does not, a task
    # prompt keeps its gold.
    reward = build_reward("constitution", None, {"arithmetic": Arithmetic()}, None, truth_weight=0.5)
    prompts = ["what is 1 plus 2?", "check 12 plus 5 is 20", "check 12 plus 5 is 20", "tell max", "tell max"]
    replies = ["3", "12 plus 5 is 17", "ppa", "8 plus 9 is 17", "8 plus 9 is 16"]
    assert reward(prompts, replies, ["arithmetic", None, None, None, None]).tolist() == [1.0, 0.5, 0.0, 0.0, -1.0]


def test_pairs_from_a_model_are_valid_preference_records(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(string.ascii_lowercase + string.digits + " ?:,.'@")
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=tokenizer.vocab_size))
    folder = save_model_folder(tmp_path / "model", model, tokenizer)
    write_red_team(tmp_path / "red", make_red_team(40, "kqzvw", ["arithmetic"], benign_fraction=0.5))
    pairs = make_feedback_pairs(str(folder), str(tmp_path / "red"), CONSTITUTION, max_new_tokens=8, min_confidence=0.0)
    assert pairs and all(p["soft_label"] >= 0.5 for p in pairs)
    out = tmp_path / "prefs.jsonl"
    out.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    assert len(read_preferences(str(out))) == len(pairs)  # what stage=dpo / stage=reward read
