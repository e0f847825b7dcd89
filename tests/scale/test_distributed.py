"""DDP and FSDP2 on two CPU processes (gloo): they train, keep ranks in step, and agree with each other."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
from rl_fixtures import toy_rl_overrides

from minigpt.run import train

pytestmark = pytest.mark.slow


class SaveWeights(L.Callback):
    """Every rank writes its flattened parameters to `<folder>/{start,end}<rank>.pt` around training."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        assert dist.get_world_size() == 2
        flat = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        torch.save(flat, Path(self.folder) / f"{when}{trainer.global_rank}.pt")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, pl_module, "start")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer, pl_module, "end")


def test_ddp_spawn_ranks_hold_identical_weights(compose_train, tmp_path):
    cfg = compose_train(
        "strategy=ddp_spawn",
        "trainer.devices=2",
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        f"+callbacks.weights._target_={__name__}.SaveWeights",
        f"+callbacks.weights.folder={tmp_path}",
    )
    train(cfg)
    end0, end1 = torch.load(tmp_path / "end0.pt"), torch.load(tmp_path / "end1.pt")
    assert not torch.equal(torch.load(tmp_path / "start0.pt"), end0)  # it trained
    assert torch.equal(end0, end1)  # all-reduced gradients kept the replicas identical


def test_ddp_writes_one_run_folder_and_fsdp_matches_its_losses(run_train, losses, tmp_path):
    common = ("trainer.devices=2", "trainer.max_steps=6", "trainer.val_check_interval=6", "trainer.log_every_n_steps=1")
    common += ("optim=adamw", "optim.warmup_steps=0")  # full lr from the start: 6 steps visibly lower the loss
    run_train("strategy=ddp", f"hydra.run.dir={tmp_path / 'runs' / 'ddp'}", *common)
    # With validation samples on: rank 0 alone cannot run a sharded forward, so the ranks gather a copy first.
    run_train(
        "strategy=fsdp", f"hydra.run.dir={tmp_path / 'runs' / 'fsdp'}", "callbacks.samples.num_samples=1", *common
    )

    # One folder per run: rank 1 logged into rank 0's folder instead of making its own.
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp", "fsdp"]
    assert (tmp_path / "runs" / "ddp" / "train_ddp_process_1.log").exists()
    assert (tmp_path / "runs" / "fsdp" / "model" / "model.safetensors").exists()  # gathered from the shards
    assert "=== step 6" in (tmp_path / "runs" / "fsdp" / "samples.txt").read_text(encoding="utf-8")

    ddp, fsdp = losses(tmp_path / "runs" / "ddp"), losses(tmp_path / "runs" / "fsdp")
    assert sorted(ddp) == list(range(6))
    assert ddp[5] < ddp[0]  # it learns
    for step in ddp:  # sharding changes where the numbers live, not what they are
        assert fsdp[step] == pytest.approx(ddp[step], abs=1e-5)


def test_multirun_with_ddp_writes_one_folder_per_job(run_train, tmp_path):
    run_train(
        "-m",
        "strategy=ddp",
        "trainer.devices=2",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "model.n_embd=32,48",
    )
    sweeps = list((tmp_path / "runs" / "multirun").iterdir())
    assert len(sweeps) == 1, f"the relaunched ranks made extra sweep folders: {sweeps}"
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job in jobs:
        assert (sweeps[0] / job / "model" / "model.safetensors").exists()
        assert (sweeps[0] / job / "train_ddp_process_1.log").exists()


def test_ppo_under_ddp_spawn_keeps_ranks_identical(compose_train, tmp_path):
    cfg = compose_train(
        *toy_rl_overrides(tmp_path, "ppo"), "data.batch_size=4", "strategy=ddp_spawn",
        "trainer.devices=2", "trainer.max_steps=8", "trainer.val_check_interval=1",
        f"+callbacks.weights._target_={__name__}.SaveWeights", f"+callbacks.weights.folder={tmp_path}",
        toy_data=False,
    )  # fmt: skip
    train(cfg)
    end0, end1 = torch.load(tmp_path / "end0.pt"), torch.load(tmp_path / "end1.pt")
    assert not torch.equal(torch.load(tmp_path / "start0.pt"), end0)  # actor and critic trained
    assert torch.equal(end0, end1)  # two optimisers, several backward passes per step, still in sync
