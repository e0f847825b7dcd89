"""Pipeline parallelism: `strategy=pipeline` on 2 gloo processes, with either schedule, reproduces the
single-process losses, across a checkpoint resume; impossible settings fail before any process starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import QUIET_OVERRIDES, compose_config, tiny_run_overrides
from distributed_fixtures import free_port, train_then_resume
from safetensors.torch import load_file

from minigpt.run import train

STEPS, BATCH = 4, 4  # every stage reads the same batch; 4 microbatches of 1 sequence
COMMON = (f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}", "optim.warmup_steps=0", "optim.lr=1e-2")
COMMON += ("optim.min_lr_ratio=1.0", f"data.batch_size={BATCH}", "model.n_layer=3")  # 3 blocks: stages of 2 and 1
SCHEDULES = ("gpipe", "1f1b")
# SFT from the pretrained model above, on reversal: the prompt tokens masked, so each microbatch counts a
# different number of tokens; packed rows bring positions and a block-diagonal mask, padded rows vary in length.
SFT = ("stage=sft", "stage.eval_tasks=false", "data=tasks/reversal", "data.tasks.reversal.alphabet=abcdegh",
       "data.num_train=40", "data.num_val=8", "data.num_eval=0", "trainer.max_steps=2", "trainer.val_check_interval=2")  # fmt: skip
SFT_RUNS = {"sft_packed": ("1f1b", "true"), "sft_padded": ("gpipe", "false")}


def _pipeline(schedule: str) -> tuple[str, ...]:
    return ("strategy=pipeline", "trainer.devices=2", "strategy.microbatches=4", f"strategy.schedule={schedule}")


def _sft(tmp_path: Path, folder: str, pack: str, *extra: str) -> list[str]:
    data = [*SFT, f"data.pack={pack}", f"paths.cache_dir={tmp_path / 'cache'}", "trainer.limit_val_batches=2"]
    base = f"init_from={tmp_path / 'single' / 'model'}"
    return [*QUIET_OVERRIDES, *COMMON, *data, base, *_losses(tmp_path / folder), *extra]


def _losses(folder: Path) -> list[str]:
    return ["+callbacks.losses._target_=distributed_fixtures.GlobalLosses", f"+callbacks.losses.folder={folder}"]


def _overrides(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    return [*tiny_run_overrides(tmp_path), *COMMON, *_losses(folder), *extra]


def _rank(rank: int, tmp_path: Path, ports: list[int]) -> None:
    """One of two processes, started the way torchrun would: per schedule, 2 steps, save, resume for 2 more."""
    torch.set_num_threads(1)
    for i, schedule in enumerate(SCHEDULES):
        folder = tmp_path / schedule
        # Validation samples too: the ranks gather the whole model for rank 0 to sample from.
        overrides = _overrides(tmp_path, folder, *_pipeline(schedule), "callbacks.samples.num_samples=1")
        train_then_resume(rank, folder, overrides, (ports[2 * i], ports[2 * i + 1]))
    for i, (name, (schedule, pack)) in enumerate(SFT_RUNS.items(), start=4):
        os.environ.update(MASTER_PORT=str(ports[i]))  # the rest of the torchrun environment is still set
        train(compose_config("train", _sft(tmp_path, name, pack, *_pipeline(schedule)), tmp_path / name))


@pytest.mark.slow
def test_each_schedule_on_two_processes_gives_the_single_process_losses_across_a_resume(tmp_path):
    single = tmp_path / "single"
    for folder in (single, *(tmp_path / s for s in SCHEDULES)):
        folder.mkdir()
    train(compose_config("train", _overrides(tmp_path, single), single))
    for name, (_, pack) in SFT_RUNS.items():
        (tmp_path / f"{name}_single").mkdir()
        (tmp_path / name).mkdir()
        train(compose_config("train", _sft(tmp_path, f"{name}_single", pack), tmp_path / f"{name}_single"))
    mp.spawn(_rank, args=(tmp_path, [free_port() for _ in range(6)]), nprocs=2, join=True)

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
    for name in SFT_RUNS:  # the masked loss of each microbatch adds up to the batch's mean
        want, got = (json.loads((tmp_path / run / "losses.json").read_text()) for run in (f"{name}_single", name))
        assert len(want) == 2 and got == pytest.approx(want, abs=1e-5), name
