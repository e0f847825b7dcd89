"""The Lightning pretrain stage computes exactly what a plain PyTorch loop computes."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from loop_parity import plain_train, stage_train  # noqa: E402  (benchmark support, shared with this test)


def test_stage_and_plain_loop_give_the_same_losses(compose_train, tmp_path):
    steps = 100
    cfg = compose_train(  # the plain loop is AdamW: the classic recipe's optimizer
        f"trainer.max_steps={steps}",
        "callbacks.model_checkpoint=null",
        "optim=adamw",
        "optim.warmup_steps=10",
        "optim.lr=3e-3",
    )
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=40))
    # A learnable stream (token t+1 = token t + 1 mod 40, random starts) so the losses move a lot.
    starts = torch.randint(0, 40, (steps, 4, 1))
    seqs = (starts + torch.arange(17)) % 40
    batches = [(s[:, :-1], s[:, 1:]) for s in seqs]
    with open_dict(cfg):
        cfg.trainer.gradient_clip_val = 0.5
    ours, _ = stage_train(cfg, copy.deepcopy(model), batches)
    plain, _ = plain_train(
        copy.deepcopy(model),
        batches,
        lr=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        betas=tuple(cfg.optim.optimizer.betas),
        warmup_steps=10,
        min_lr_ratio=cfg.optim.min_lr_ratio,
        grad_clip=0.5,
    )
    assert len(ours) == len(plain) == steps
    assert plain[-1] < 0.5 * plain[0]  # it learned, so equality below is not equality of two flat lines
    assert ours[steps - 1] == pytest.approx(plain[steps - 1], rel=1e-4)
    assert ours == pytest.approx(plain, rel=1e-4)
