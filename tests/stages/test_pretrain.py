"""Pretraining learns, resumes on the same loss curve, and bad configs fail before training."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from omegaconf import open_dict

from minigpt.model.folder import load_model_folder
from minigpt.run import train
from minigpt.utils.errors import ConfigError


def read_train_losses(run_dir: Path) -> dict[int, float]:
    """step → train/loss from the CSV logger's metrics.csv."""
    losses = {}
    with open(run_dir / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


def test_tiny_pretrain_loss_falls_well_below_its_start(compose_train, tmp_path):
    cfg = compose_train(
        "trainer.max_steps=150",
        "trainer.val_check_interval=150",
        "trainer.log_every_n_steps=1",
        "optim.lr=3e-3",
        "optim.warmup_steps=5",
    )
    metrics = train(cfg)
    losses = read_train_losses(tmp_path / "run")
    vocab = load_model_folder(tmp_path / "run" / "model")[1].vocab_size
    assert losses[0] == pytest.approx(math.log(vocab), rel=0.1)  # a fresh model is ~uniform
    assert metrics["val/loss"] < 0.5 * losses[0]
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-4)
    assert 0 < metrics["val/bpb"] < metrics["val/loss"] / math.log(2) + 1e-6  # char text ≥ 1 byte/token


@pytest.mark.parametrize("optim", ["adamw", "muon"])
def test_resume_from_checkpoint_continues_the_same_loss_curve(compose_train, tmp_path, optim):
    # optim=muon: the Muon momentum buffers and the AdamW moments both live in the checkpoint.
    common = (
        f"optim={optim}",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=8",
        "callbacks.model_checkpoint.every_n_train_steps=8",
        "callbacks.model_checkpoint.save_top_k=-1",
    )
    full_cfg = compose_train("trainer.max_steps=16", *common)
    train(full_cfg)
    full = read_train_losses(tmp_path / "run")

    first_cfg = compose_train("trainer.max_steps=16", *common)
    with open_dict(first_cfg):
        first_cfg.paths.output_dir = first_cfg.trainer.default_root_dir = str(tmp_path / "part")
        first_cfg.callbacks.model_checkpoint.dirpath = str(tmp_path / "part" / "checkpoints")
        first_cfg.logger.csv.save_dir = str(tmp_path / "part")
        first_cfg.trainer.max_steps = 8  # "killed" after the step-8 checkpoint
    train(first_cfg)
    ckpt = tmp_path / "part" / "checkpoints" / "last.ckpt"
    resumed_cfg = compose_train("trainer.max_steps=16", *common, f"ckpt_path={ckpt}")
    with open_dict(resumed_cfg):
        resumed_cfg.paths.output_dir = resumed_cfg.trainer.default_root_dir = str(tmp_path / "resumed")
        resumed_cfg.callbacks.model_checkpoint.dirpath = str(tmp_path / "resumed" / "checkpoints")
        resumed_cfg.logger.csv.save_dir = str(tmp_path / "resumed")
    train(resumed_cfg)
    resumed = read_train_losses(tmp_path / "resumed")
    assert sorted(resumed) == list(range(8, 16))
    for step in range(8, 16):
        assert resumed[step] == pytest.approx(full[step], rel=1e-5), step


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-0.001", "optim.lr=-0.001 must be positive"),
        ("data.seq_len=64", "data.seq_len=64 is longer than the model's context model.block_size=32"),
        ("trainer.max_steps=0", "trainer.max_steps=0 must be positive"),
        ("data.corpus.paths=[/no/such/file.txt]", "matches no file"),
        ("init_from=/no/such/model", "is not a model folder"),
        ("model.n_head=3", "not divisible by model.n_head=3"),
    ],
)
def test_bad_config_fails_before_training_with_one_clear_sentence(compose_train, tmp_path, override, message):
    cfg = compose_train(override)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_model_is_rejected_by_composition(compose_train):
    with pytest.raises(MissingConfigException, match="gpt_huge"):
        compose_train("model=gpt_huge")
