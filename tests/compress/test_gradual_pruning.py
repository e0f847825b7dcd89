"""`prune.schedule=gradual`: training prunes the block weights to the final sparsity along the cubic schedule."""

from __future__ import annotations

import pytest
import torch

from minigpt.callbacks.pruning import GradualPruning
from minigpt.model.folder import load_model_folder
from minigpt.run import train
from minigpt.utils.errors import ConfigError


def test_gradual_pruning_reaches_the_final_sparsity_while_training(compose_train, losses, tmp_path) -> None:
    cfg = compose_train("prune.schedule=gradual", "prune.final_sparsity=0.7", "prune.frequency=2", "optim.lr=3e-3")
    train(cfg)
    model, _ = load_model_folder(tmp_path / "run" / "model")
    weights = [
        m.weight for name, m in model.named_modules() if name.startswith("blocks.") and isinstance(m, torch.nn.Linear)
    ]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.7, abs=0.01)
    sparsity = losses(tmp_path / "run", "prune/sparsity")
    # 20 steps, end at 15, updates every 2 steps: s rises fast then flattens (0 → 0.7 along the cubic).
    values = [sparsity[s] for s in sorted(sparsity)]
    assert values == sorted(values) and values[-1] == pytest.approx(0.7)
    train_loss = losses(tmp_path / "run")
    assert train_loss[max(train_loss)] < train_loss[min(train_loss)]


def test_gradual_pruning_is_off_by_default_and_refuses_bad_sparsity(compose_train) -> None:
    cfg = compose_train()
    assert cfg.prune.schedule is None and not GradualPruning(**cfg.prune).on
    with pytest.raises(ConfigError, match=r"prune.final_sparsity=1.2 must be in \[0, 1\)"):
        GradualPruning("gradual", final_sparsity=1.2)
