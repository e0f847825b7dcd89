"""Helpers for tests that start 2 gloo processes the way torchrun would and compare them with one process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import lightning as L
import torch.distributed as dist
from conftest import compose_config
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.distributed.tensor import DTensor

from minigpt.run import train


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


def _local_bytes(tensors) -> int:
    """Bytes this process holds of `tensors` (its shard of a sharded `DTensor`)."""
    return sum(t.to_local().nbytes if isinstance(t, DTensor) else t.nbytes for t in tensors)


class StateBytes(L.Callback):
    """After the first optimizer step, each rank writes the bytes of weights, gradients and optimizer state
    it holds to `<folder>/bytes<rank>.json`."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx:
            return
        optimizer = trainer.optimizers[0]
        states = optimizer.optim.state if isinstance(optimizer, ZeroRedundancyOptimizer) else optimizer.state
        params = list(pl_module.parameters())
        held = {
            "params": _local_bytes(params),
            "grads": _local_bytes(p.grad for p in params if p.grad is not None),
            "optimizer": _local_bytes(v for state in states.values() for v in state.values() if v.dim() > 0),
        }
        (Path(self.folder) / f"bytes{trainer.global_rank}.json").write_text(json.dumps(held))


def free_port() -> int:
    """A free TCP port on loopback for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_then_resume(rank: int, folder: Path, overrides: list[str], ports: tuple[int, int], world: int = 2) -> None:
    """As rank `rank` of `world`: train 2 steps into `folder`, then resume from its last checkpoint for the rest.

    Rank 0 keeps the first part's losses as `losses_before_resume.json` (`GlobalLosses` writes `losses.json`).
    """
    first = ["trainer.max_steps=2", "trainer.val_check_interval=2"]
    resume = [f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}"]
    for part, extra in enumerate((first, resume)):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[part]))
        os.environ.update(WORLD_SIZE=str(world), NODE_RANK="0", LOCAL_RANK=str(rank))
        train(compose_config("train", [*overrides, *extra], folder))
        if rank == 0 and part == 0:
            (folder / "losses.json").rename(folder / "losses_before_resume.json")
