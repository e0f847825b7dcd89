"""Build the Lightning strategy named by the `strategy` config group, and clean up after it.

`conf/strategy/*.yaml` are ordinary `_target_` nodes (DDPStrategy, DeepSpeedStrategy, `zero_strategy`);
this module adds what a plain `instantiate` cannot: refusing DeepSpeed on a CPU before anything starts,
keeping Hydra sweeps and DDP's relaunched processes in one folder, and leaving the process clean for the
next job of a sweep.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy, Strategy
from omegaconf import DictConfig

from minigpt.scale.hydra_ddp import install_multirun_fix
from minigpt.utils.errors import ConfigError

# What Lightning's launcher writes into this process's environment when it starts the other ranks. Left
# behind, a second job in the same process would believe an outside launcher (torchrun) started it.
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 (`torch.distributed.fsdp.fully_shard`): every process keeps 1/W of the parameters, gradients
    and optimizer state; no tensor parallelism.

    `reshard_after_forward=True` frees each block's gathered weights after its forward and gathers them
    again for backward: ZeRO-3 (Rajbhandari et al. 2020, §5.3, P_os+g+p). `False` keeps them gathered from
    forward until the end of backward: one all-gather per block and step instead of two, at the memory of
    full weights during the step — ZeRO-2's trade (P_os+g: gradients are still reduce-scattered).

    Lightning's `ModelParallelStrategy` builds a 2-D (data, tensor) device mesh; putting all processes of
    all nodes on the data axis makes it plain FSDP. It runs on CPUs (gloo) and GPUs (NCCL) alike, unlike
    the older `FSDPStrategy`, which refuses a CPU. The sharding itself happens in
    `Stage.configure_model` (see `minigpt.scale.sharding`).
    """

    def __init__(
        self, reshard_after_forward: bool = True, save_distributed_checkpoint: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            **kwargs,
        )
        self.reshard_after_forward = reshard_after_forward

    def setup_environment(self) -> None:
        """Size the data-parallel axis to the whole world (known only once devices are resolved)."""
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


class ZeRO1Strategy(DDPStrategy):
    """DDP whose optimizer state is split across the processes: ZeRO stage 1 (Rajbhandari et al. 2020,
    §5.1, P_os). Gradients are all-reduced as in DDP; each process then updates only the parameters whose
    optimizer state it owns and broadcasts them (`torch.distributed.optim.ZeroRedundancyOptimizer`, built
    by `Stage.build_optimizer` when `shards_optimizer_state` is set). FSDP2 has no switch for this stage.
    """

    shards_optimizer_state = True


def zero_strategy(zero: int = 3, save_distributed_checkpoint: bool = True) -> Strategy:
    """The strategy of `strategy=fsdp strategy.zero=1|2|3`: what each of W processes keeps 1/W of.

    1: optimizer state (`ZeRO1Strategy`); 2: + gradients (FSDP2 without resharding after forward);
    3: + parameters (FSDP2). The same stages as DeepSpeed's `zero_optimization.stage` 1/2/3.
    """
    if zero not in (1, 2, 3):
        raise ConfigError(
            f"strategy.zero={zero!r} is not a ZeRO stage; use 1 (optimizer state), 2 (+ gradients) or 3 (+ parameters)."
        )
    if zero == 1:  # one checkpoint file: the optimizer state is gathered on rank 0 to save it
        return ZeRO1Strategy(find_unused_parameters=False, gradient_as_bucket_view=True)
    return FSDP2Strategy(reshard_after_forward=zero == 3, save_distributed_checkpoint=save_distributed_checkpoint)


def _on_cpu(trainer_cfg: DictConfig) -> bool:
    """Whether the trainer will run on CPUs (`accelerator=cpu`, or `auto` with no CUDA device)."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def build_strategy(cfg: DictConfig) -> Strategy | str:
    """The strategy object for `Trainer(strategy=...)`, or `"auto"` when the group leaves it to Lightning.

    Raises `ConfigError` before training for combinations that cannot work (DeepSpeed on a CPU).
    """
    node = cfg.get("strategy")
    if not node or not node.get("_target_"):
        return "auto"
    target = str(node._target_)
    if "DeepSpeed" in target:
        name = f"deepspeed_zero{node.get('stage', '')}"  # the config group's own name for it
        if _on_cpu(cfg.trainer):
            raise ConfigError(
                f"strategy={name} runs only on CUDA GPUs (trainer.accelerator={cfg.trainer.accelerator}); "
                "on CPUs use strategy=fsdp (shards like ZeRO-3) or strategy=ddp, or add trainer=gpu."
            )
        if find_spec("deepspeed") is None:
            raise ConfigError(f"strategy={name} needs the deepspeed package: pip install deepspeed.")
    strategy = instantiate(node)
    if isinstance(strategy, (DDPStrategy, ModelParallelStrategy)):  # DeepSpeed is a DDPStrategy too
        install_multirun_fix()
    return strategy


@contextmanager
def distributed_job() -> Iterator[None]:
    """Run one training job; afterwards tear down its process group and the launcher's environment.

    A sweep runs its jobs one after another in one process: without this the second DDP job would
    reuse a dead process group, or skip launching its other ranks.
    """
    saved = {key: os.environ.get(key) for key in _LAUNCH_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
