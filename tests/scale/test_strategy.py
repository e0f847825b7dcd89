"""Strategy selection: DeepSpeed refused on CPUs up front; the relaunch command of a multirun DDP rank."""

from __future__ import annotations

import pytest
from lightning.pytorch.strategies import DDPStrategy

from minigpt.run import train
from minigpt.scale.hydra_ddp import job_arguments
from minigpt.scale.strategy import FSDP2Strategy, build_strategy
from minigpt.utils.errors import ConfigError


@pytest.mark.parametrize("name", ["deepspeed_zero2", "deepspeed_zero3_offload"])
def test_deepspeed_on_cpu_fails_before_training_and_names_the_alternative(compose_train, tmp_path, name):
    cfg = compose_train(f"strategy={name}")
    with pytest.raises(ConfigError, match="strategy=fsdp"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # nothing ran: no checkpoints, no logs
    assert not (tmp_path / "cache").exists()  # not even tokenisation


def test_groups_build_their_strategies(compose_train):
    assert build_strategy(compose_train()) == "auto"
    ddp = build_strategy(compose_train("strategy=ddp_spawn"))
    assert isinstance(ddp, DDPStrategy) and ddp._start_method == "spawn"
    assert isinstance(build_strategy(compose_train("strategy=fsdp")), FSDP2Strategy)


def test_a_multirun_rank_reruns_only_its_own_job():
    argv = ["-m", "--config-name", "train", "model=gpt_nano,llama_nano", "strategy=ddp", "trainer.devices=2"]
    job = ["model=llama_nano", "strategy=ddp", "trainer.devices=2"]
    assert job_arguments(argv, job) == ["--config-name", "train", *job]
