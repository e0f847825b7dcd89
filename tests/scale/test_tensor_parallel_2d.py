"""2-D parallelism: `strategy=tensor_parallel trainer.devices=4 strategy.tensor_parallel_size=2` on 4 gloo
processes (tensor parallelism inside each pair, FSDP2 across the pairs) reproduces the single-process losses on
the same global batch, across a checkpoint resume; a degree that does not divide the devices is refused
before any process starts."""

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
from minigpt.utils.errors import ConfigError

STEPS, BATCH, WORLD, DEGREE = 4, 2, 4, 2  # BATCH per data-parallel group; the single process takes 2·BATCH
COMMON = (
    "optim=adamw",
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STEPS}",
    "optim.warmup_steps=0",
    "optim.lr=1e-2",
    "optim.min_lr_ratio=1.0",  # constant lr: 2 + 2 steps see the 4-step rates
    # Llama-style blocks (SwiGLU; 4 query heads sharing 2 key/value heads), as in test_tensor_parallel.py.
    "model.activation=swiglu",
    "model.n_head=4",
    "model.n_kv_head=2",
    "model.norm=rmsnorm",
    "model.bias=false",
)


def _overrides(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    callbacks = ["+callbacks.losses._target_=distributed_fixtures.GlobalLosses", f"+callbacks.losses.folder={folder}"]
    return [*tiny_run_overrides(tmp_path), *COMMON, *callbacks, *extra]


def _rank(rank: int, tmp_path: Path, ports: list[int]) -> None:
    """One of four processes, started the way torchrun would: 2 steps, save, resume for the other 2."""
    torch.set_num_threads(1)
    folder = tmp_path / "tp2d"
    overrides = _overrides(
        tmp_path,
        folder,
        "strategy=tensor_parallel",
        f"trainer.devices={WORLD}",
        f"strategy.tensor_parallel_size={DEGREE}",
        f"data.batch_size={BATCH}",
        "callbacks.samples.num_samples=1",  # sampling through the 2-D model is a collective every rank joins
    )
    train_then_resume(rank, folder, overrides, (ports[0], ports[1]), world=WORLD)


@pytest.mark.slow
def test_tensor_parallel_with_fsdp2_on_a_2x2_mesh_gives_the_single_process_losses_across_a_resume(tmp_path):
    single, tp2d = tmp_path / "single", tmp_path / "tp2d"
    single.mkdir(), tp2d.mkdir()
    train(compose_config("train", [*_overrides(tmp_path, single), f"data.batch_size={2 * BATCH}"], single))
    mp.spawn(_rank, args=(tmp_path, [free_port() for _ in range(2)]), nprocs=WORLD, join=True)

    want = json.loads((single / "losses.json").read_text())
    assert len(want) == STEPS and want[-1] < want[0]  # it learns
    got = [json.loads((tp2d / f"{name}.json").read_text()) for name in ("losses_before_resume", "losses")]
    assert len(got[0]) == 2 and len(got[1]) == 2
    assert got[0] + got[1] == pytest.approx(want, abs=1e-5)
    assert (tp2d / "samples.txt").read_text().count("=== step") == 2  # after step 2 and step 4
    # The exported model is gathered from both mesh axes, with the qkv rows put back in their plain order.
    plain, gathered = (load_file(folder / "model" / "model.safetensors") for folder in (single, tp2d))
    assert plain.keys() == gathered.keys()
    for name in plain:  # 1e-4: see test_tensor_parallel.py (Adam magnifies float-order differences)
        torch.testing.assert_close(gathered[name], plain[name], atol=1e-4, rtol=1e-4, msg=name)


def test_a_tensor_parallel_size_that_does_not_divide_the_devices_is_refused(compose_train):
    cfg = compose_train("strategy=tensor_parallel", "trainer.devices=4", "strategy.tensor_parallel_size=3")
    with pytest.raises(ConfigError, match="tensor_parallel_size=3 must divide trainer.devices=4"):
        train(cfg)


def test_a_tensor_parallel_size_that_does_not_divide_the_heads_is_refused(compose_train):
    cfg = compose_train(
        "strategy=tensor_parallel", "trainer.devices=4", "strategy.tensor_parallel_size=2", "model.n_head=1"
    )
    with pytest.raises(ConfigError, match="must divide model.n_head=1"):
        train(cfg)
