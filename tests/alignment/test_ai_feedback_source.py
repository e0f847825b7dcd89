"""`data=preferences data.source=ai_feedback`: the preference data module makes its pairs from the model (RL-CAI)."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

from minigpt.alignment.constitution import load_constitution
from minigpt.data.preferences import PreferenceDataModule
from minigpt.model.config import ModelConfig
from minigpt.model.folder import save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError


def test_ai_feedback_source_samples_labels_and_keeps_its_red_team(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tokenizer = CharTokenizer.train(string.ascii_lowercase + string.digits + " ?:,.'@")
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=tokenizer.vocab_size))
    folder = save_model_folder(tmp_path / "model", model, tokenizer)
    options = dict(run=str(folder), constitution=load_constitution("default"), out=str(tmp_path / "run" / "ai.jsonl"),
                   red_team_n=40, tasks=["arithmetic"], max_new_tokens=8, min_confidence=0.0)  # fmt: skip
    data = PreferenceDataModule(source="ai_feedback", ai_feedback=options)
    assert data.path == options["out"] and (tmp_path / "run" / "red_team" / "train.jsonl").is_file()
    pairs = [p for split in data.pairs.values() for _, p in split]
    assert len(pairs) >= 2 and all(p.chosen != p.rejected for p in pairs)
    with pytest.raises(ConfigError, match="data.source='human'"):
        PreferenceDataModule(source="human", path=options["out"])
    with pytest.raises(ConfigError, match="init_from"):
        PreferenceDataModule(source="ai_feedback", ai_feedback={**options, "run": None})
