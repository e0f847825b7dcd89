"""ZeRO stages as config: `strategy=fsdp strategy.zero=1|2|3` on 2 gloo processes reproduce the single-process
losses also across a checkpoint resume, and each rank holds the share of weights, gradients and optimizer
state the planner says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import compose_config, tiny_run_overrides
from distributed_fixtures import free_port, train_then_resume
from lightning.pytorch.strategies import DDPStrategy

from minigpt.model.config import ModelConfig
from minigpt.run import train
from minigpt.scale.memory import STRATEGIES, plan
from minigpt.scale.plan import model_shape
from minigpt.scale.strategy import FSDP2Strategy, ZeRO1Strategy, build_strategy, zero_strategy
from minigpt.utils.errors import ConfigError

STEPS, BATCH = 4, 4  # per rank; the single process takes both ranks' samples in one batch of 2·BATCH
# A constant learning rate (min_lr_ratio=1): a run that stops after 2 steps sees the same rates as one of 4.
COMMON = (
    "optim=adamw",
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STEPS}",
    "optim.warmup_steps=0",
    "optim.lr=1e-2",
)
COMMON += ("optim.min_lr_ratio=1.0",)
# Each stage also recomputes something (the single process does not): sharding and checkpointing compose.
RECOMPUTE = {1: "mlp", 2: "attention", 3: "true"}


def _overrides(tmp_path: Path, folder: Path, *extra: str) -> list[str]:
    callbacks = [
        *(
            f"+callbacks.{name}._target_={cls}"
            for name, cls in (
                ("losses", "distributed_fixtures.GlobalLosses"),
                ("held", "distributed_fixtures.StateBytes"),
            )
        ),
        *(f"+callbacks.{name}.folder={folder}" for name in ("losses", "held")),
    ]
    return [*tiny_run_overrides(tmp_path), *COMMON, *callbacks, *extra]


def _rank(rank: int, tmp_path: Path, ports: list[int]) -> None:
    """One of two processes, started the way torchrun would (env vars, so Lightning launches nothing).

    Each stage trains 2 steps, saves, and resumes from its checkpoint for the other 2.
    """
    torch.set_num_threads(1)
    for zero in (1, 2, 3):
        folder = tmp_path / f"zero{zero}"
        folder.mkdir(exist_ok=True)
        overrides = _overrides(tmp_path, folder, "strategy=fsdp", f"strategy.zero={zero}", "trainer.devices=2")
        overrides.append(f"model.activation_checkpointing={RECOMPUTE[zero]}")  # changes no number either
        overrides.append(f"data.batch_size={BATCH}")
        train_then_resume(rank, folder, overrides, (ports[2 * (zero - 1)], ports[2 * (zero - 1) + 1]))


@pytest.mark.slow
def test_every_zero_stage_on_two_processes_gives_the_single_process_losses_across_a_resume(tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    train(compose_config("train", [*_overrides(tmp_path, single), f"data.batch_size={2 * BATCH}"], single))
    mp.spawn(_rank, args=(tmp_path, [free_port() for _ in range(6)]), nprocs=2, join=True)

    want = json.loads((single / "losses.json").read_text())
    assert len(want) == STEPS and want[-1] < want[0]  # it learns
    shape = model_shape(ModelConfig.load(single / "model" / "config.json"))
    for zero in (1, 2, 3):
        folder = tmp_path / f"zero{zero}"
        got = [json.loads((folder / f"{name}.json").read_text()) for name in ("losses_before_resume", "losses")]
        # Two steps, then two after resuming: the last loss follows an update made with restored Adam moments.
        assert len(got[0]) == 2 and len(got[1]) == 2
        # Sharding moves the numbers, it does not change them; the checkpoint restores every shard.
        assert got[0] + got[1] == pytest.approx(want, abs=1e-5), zero
        assert (folder / "model" / "model.safetensors").exists()  # full weights gathered

        # The planner's share per GPU is what the ranks hold (on average: ZeRO-1 splits by whole tensors).
        held = [json.loads((folder / f"bytes{rank}.json").read_text()) for rank in (0, 1)]
        planned = plan(shape, next(s for s in STRATEGIES if s.name == f"fsdp zero={zero}"), 2, "fp32", BATCH, 32)
        for kind in ("params", "grads", "optimizer"):
            assert (held[0][kind] + held[1][kind]) / 2 == pytest.approx(getattr(planned, kind), rel=0.05), (zero, kind)


def test_zero_stages_pick_their_strategy(compose_train):
    one = build_strategy(compose_train("strategy=fsdp", "strategy.zero=1"))
    assert isinstance(one, ZeRO1Strategy) and isinstance(one, DDPStrategy) and one.shards_optimizer_state
    two, three = (build_strategy(compose_train("strategy=fsdp", f"strategy.zero={z}")) for z in (2, 3))
    assert isinstance(two, FSDP2Strategy) and not two.reshard_after_forward  # gathered weights kept for backward
    assert isinstance(three, FSDP2Strategy) and three.reshard_after_forward
    with pytest.raises(ConfigError, match="strategy.zero=4 is not a ZeRO stage"):
        zero_strategy(zero=4)
