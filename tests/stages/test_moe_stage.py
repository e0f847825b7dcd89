"""An MoE model pretrains and logs router metrics; `stage=moe` upcycles a dense run; pruning saves a model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from minigpt.cli.moe_prune import main as prune_main
from minigpt.evaluation.logs import read_metrics
from minigpt.evaluation.moe_plots import expert_load_matrix, plot_expert_load
from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder
from minigpt.model.moe import MoELayer
from minigpt.run import train
from minigpt.stages.moe import UpcycleStage
from minigpt.utils.errors import ConfigError

TINY_MOE = ("model=moe_8x", "model.moe.num_experts=4", "model.moe.expert_hidden=32")


def first_train_loss(run_dir: Path) -> float:
    """train/loss at the first logged step of a run's metrics.csv."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return next(float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss"))


def test_moe_model_pretrains_and_logs_expert_load(compose_train, tmp_path):
    cfg = compose_train(
        *TINY_MOE,
        "trainer.max_steps=60",
        "trainer.val_check_interval=60",
        "trainer.log_every_n_steps=5",
        "optim.lr=3e-3",
        "optim.warmup_steps=5",
    )
    metrics = train(cfg)
    run = tmp_path / "run"
    assert metrics["val/loss"] < 0.7 * first_train_loss(run)
    model, _ = load_model_folder(run / "model")
    assert isinstance(model.blocks[0].ffn, MoELayer) and model.config.moe.num_experts == 4
    series = read_metrics(run / "csv" / "metrics.csv")
    layers, load = expert_load_matrix(series)
    assert layers == [0, 1] and load.shape == (2, 4)
    assert load.sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-4)
    png = plot_expert_load(series, tmp_path / "load.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_upcycling_starts_at_the_parent_loss_and_improves_then_prunes(compose_train, compose_command, tmp_path):
    dense_cfg = compose_train(
        "trainer.max_steps=30", "trainer.val_check_interval=30", "optim.lr=3e-3", "optim.warmup_steps=5"
    )
    parent = train(dense_cfg)["val/loss"]
    parent_dir = tmp_path / "dense"
    (tmp_path / "run").rename(parent_dir)

    cfg = compose_train(
        "stage=moe",
        f"init_from={parent_dir / 'model'}",
        *TINY_MOE,
        "trainer.max_steps=30",
        "trainer.val_check_interval=30",
        "trainer.log_every_n_steps=1",
        "optim.lr=1e-3",
        "optim.warmup_steps=5",
    )
    metrics = train(cfg)
    # Step 0 is logged before any update: the upcycled model still computes its parent's function.
    assert first_train_loss(tmp_path / "run") < parent + 0.3
    assert metrics["val/loss"] < parent
    model, _ = load_model_folder(tmp_path / "run" / "model")
    assert model.config.moe.num_experts == 4 and model.blocks[0].ffn.experts.hidden == model.config.mlp_hidden
    assert model.config.n_layer == 2  # the trunk is the parent's

    prune_main(
        compose_command(
            "moe_prune",
            f"run={tmp_path / 'run'}",
            "keep=2",
            f"out={tmp_path / 'pruned'}",
            f"text=[{tmp_path / 'play.txt'}]",
            "tokens=2000",
        )
    )
    pruned, tokenizer = load_model_folder(tmp_path / "pruned")
    assert pruned.config.moe.num_experts == 2 and tokenizer is not None


def test_upcycling_needs_a_dense_parent_and_experts(compose_train):
    with pytest.raises(ConfigError, match="init_from"):
        train(compose_train("stage=moe", *TINY_MOE))
    with pytest.raises(ConfigError, match="model.moe is null"):
        UpcycleStage(ModelConfig(vocab_size=40), optim={}, init_from="outputs/dense/model")


def test_bad_moe_setting_fails_before_training(compose_train):
    with pytest.raises(ConfigError, match="top_k=1"):
        train(compose_train(*TINY_MOE, "model.moe.router=switch", "model.moe.capacity_factor=1.0"))
