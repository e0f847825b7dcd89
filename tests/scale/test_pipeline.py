"""Pipeline parallelism: `strategy=pipeline` on 2 gloo processes, with either schedule, reproduces the
single-process losses, across a checkpoint resume; impossible settings fail before any process starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import compose_config, tiny_run_overrides
from distributed_fixtures import free_port, train_then_resume
from safetensors.torch import load_file

from minigpt.run import train

STEPS, BATCH = 4, 4  # every stage reads the same batch; 4 microbatches of 1 sequence
COMMON = (f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}", "optim.warmup_steps=0", "optim.lr=1e-2")
COMMON += ("optim.min_lr_ratio=1.0", f"data.batch_size={BATCH}", "model.n_layer=3")  # 3 blocks: stages of 2 and 1
SCHEDULES = ("gpipe", "1f1b")


def _overrides(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    losses = ["+callbacks.losses._target_=distributed_fixtures.GlobalLosses", f"+callbacks.losses.folder={folder}"]
    return [*tiny_run_overrides(tmp_path), *COMMON, *losses, *extra]


def _rank(rank: int, tmp_path: Path, ports: list[int]) -> None:
    """One of two processes, started the way torchrun would: per schedule, 2 steps, save, resume for 2 more."""
    torch.set_num_threads(1)
    for i, schedule in enumerate(SCHEDULES):
        folder = tmp_path / schedule
        pipeline = ("strategy=pipeline", "trainer.devices=2", "strategy.microbatches=4", f"strategy.schedule={schedule}")
        # Validation samples too: the ranks gather the whole model for rank 0 to sample from.
        overrides = _overrides(tmp_path, folder, *pipeline, "callbacks.samples.num_samples=1")
        train_then_resume(rank, folder, overrides, (ports[2 * i], ports[2 * i + 1]))


@pytest.mark.slow
def test_each_schedule_on_two_processes_gives_the_single_process_losses_across_a_resume(tmp_path):
    single = tmp_path / "single"
    for folder in (single, *(tmp_path / s for s in SCHEDULES)):
        folder.mkdir()
    train(compose_config("train", _overrides(tmp_path, single), single))
    mp.spawn(_rank, args=(tmp_path, [free_port() for _ in range(4)]), nprocs=2, join=True)

    want = json.loads((single / "losses.json").read_text())
    assert len(want) == STEPS and want[-1] < want[0]  # it learns
    plain = load_file(single / "model" / "model.safetensors")
    for schedule in SCHEDULES:
        folder = tmp_path / schedule
        got = [json.loads((folder / f"{name}.json").read_text()) for name in ("losses_before_resume", "losses")]
        assert len(got[0]) == 2 and len(got[1]) == 2
        assert got[0] + got[1] == pytest.approx(want, abs=1e-5), schedule  # microbatches move work, not numbers
        assert (folder / "samples.txt").read_text().count("=== step") == 2  # after step 2 and step 4
        gathered = load_file(folder / "model" / "model.safetensors")  # the stages' blocks put together
        assert plain.keys() == gathered.keys()
        for name in plain:
            torch.testing.assert_close(gathered[name], plain[name], atol=1e-5, rtol=1e-4, msg=name)
