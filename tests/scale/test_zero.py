"""ZeRO stages as config: `strategy=fsdp strategy.zero=1|2|3` on 2 gloo processes reproduce the single-process
losses, and each stage shards what it says it shards."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import compose_config, tiny_run_overrides
from lightning.pytorch.strategies import DDPStrategy

from minigpt.run import train
from minigpt.scale.strategy import FSDP2Strategy, ZeRO1Strategy, build_strategy, zero_strategy
from minigpt.utils.errors import ConfigError

STEPS, BATCH = 3, 4  # per rank; the single process takes both ranks' samples in one batch of 2·BATCH
COMMON = (f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}", "optim.warmup_steps=0", "optim.lr=1e-2")


class GlobalLosses(L.Callback):
    """Rank 0 writes the loss of every step, averaged over the ranks, to `<folder>/losses.json`.

    Lightning logs rank 0's own loss; the mean over ranks is the loss of the whole (global) batch, which
    is what a single process with the ranks' batches put together computes.
    """

    def __init__(self, folder: str) -> None:
        self.folder, self.losses = folder, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"].detach().clone()
        if dist.is_initialized():
            dist.all_reduce(loss)
            loss /= dist.get_world_size()
        self.losses.append(float(loss))

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            (Path(self.folder) / "losses.json").write_text(json.dumps(self.losses))


def _overrides(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    callback = [f"+callbacks.losses._target_={__name__}.GlobalLosses", f"+callbacks.losses.folder={folder}"]
    return [*tiny_run_overrides(tmp_path), *COMMON, *callback, *extra]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, tmp_path: Path, ports: list[int]) -> None:
    """One of two processes, started the way torchrun would (env vars, so Lightning launches nothing)."""
    torch.set_num_threads(1)
    for zero, port in zip((1, 2, 3), ports):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", NODE_RANK="0")
        os.environ["LOCAL_RANK"] = str(rank)
        folder = tmp_path / f"zero{zero}"
        folder.mkdir(exist_ok=True)
        overrides = _overrides(tmp_path, folder, "strategy=fsdp", f"strategy.zero={zero}", "trainer.devices=2")
        train(compose_config("train", [*overrides, f"data.batch_size={BATCH}"], folder))


@pytest.mark.slow
def test_every_zero_stage_on_two_processes_gives_the_single_process_losses(tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    train(compose_config("train", [*_overrides(tmp_path, single), f"data.batch_size={2 * BATCH}"], single))
    mp.spawn(_rank, args=(tmp_path, [_free_port() for _ in range(3)]), nprocs=2, join=True)

    want = json.loads((single / "losses.json").read_text())
    assert len(want) == STEPS and want[-1] < want[0]  # it learns
    for zero in (1, 2, 3):
        got = json.loads((tmp_path / f"zero{zero}" / "losses.json").read_text())
        assert got == pytest.approx(want, abs=1e-5), zero  # sharding moves the numbers, it does not change them
        assert (tmp_path / f"zero{zero}" / "model" / "model.safetensors").exists()  # full weights gathered


def test_zero_stages_pick_their_strategy(compose_train):
    one = build_strategy(compose_train("strategy=fsdp", "strategy.zero=1"))
    assert isinstance(one, ZeRO1Strategy) and isinstance(one, DDPStrategy) and one.shards_optimizer_state
    two, three = (build_strategy(compose_train("strategy=fsdp", f"strategy.zero={z}")) for z in (2, 3))
    assert isinstance(two, FSDP2Strategy) and not two.reshard_after_forward  # gathered weights kept for backward
    assert isinstance(three, FSDP2Strategy) and three.reshard_after_forward
    with pytest.raises(ConfigError, match="strategy.zero=4 is not a ZeRO stage"):
        zero_strategy(zero=4)
