"""`strategy=pipeline`: pipeline parallelism (`minigpt.scale.pipeline`) as a Lightning strategy.

The design: the strategy, not the stage, owns the pipelined step. A pipeline schedule runs forward and
backward together, microbatch by microbatch, across processes; a LightningModule's `training_step`
returns one loss for Lightning to backpropagate. So `PipelineStrategy` takes over the two places where a
strategy already stands between Lightning and the module (as DDP's wrapper does):

- `configure_ddp`, where DDP would wrap the module, cuts the model to this rank's stage and builds the
  schedule runner;
- `training_step` / `validation_step` run the schedule on the batch instead of calling the stage's own
  steps, and tell Lightning that backward is done (its `_skip_backward`, the switch Lightning's own
  `StochasticWeightAveraging` uses); Lightning still clips (over all stages) and steps the optimizer and
  the learning-rate schedule.

The stage classes keep no pipeline branch. What the strategy runs is the objective that pretraining and
SFT share, next-token cross-entropy over the targets that are not `IGNORE_INDEX` (`pipeline.lm_batch`
reads both batch layouts), and it feeds their `val_loss` metric; `check_pipeline` refuses the stages
and options it cannot run, before any process starts.

Pipeline parallelism here is the only parallel axis: all ranks read the same batches (no data
parallelism across pipelines yet), and a checkpoint resumes on the same number of stages.
"""

from __future__ import annotations

from typing import Any, cast

from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig
from torchmetrics import MeanMetric

from minigpt.losses.lm import IGNORE_INDEX
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.scale.pipeline import SCHEDULES, PipelineRunner, clip_grad_norm, cut_model, gather_state, lm_batch
from minigpt.utils.errors import ConfigError

# The stages whose training step is the next-token objective the pipeline runs (see the module docstring).
PIPELINED_STAGES = ("minigpt.stages.pretrain.PretrainStage", "minigpt.stages.sft.SFTStage")


class PipelineStrategy(DDPStrategy):
    """One pipeline stage per process (gloo on CPUs, NCCL on GPUs); DDP's launcher and process group.

    Args:
        microbatches: M, the microbatches each batch is cut into (must divide `data.batch_size`).
        schedule: `gpipe` or `1f1b` (`minigpt.scale.pipeline.SCHEDULES`).
    """

    def __init__(self, microbatches: int = 4, schedule: str = "1f1b", **kwargs: Any) -> None:
        if schedule not in SCHEDULES:
            raise ConfigError(f"strategy.schedule={schedule} is not a pipeline schedule; use {' or '.join(SCHEDULES)}.")
        if not isinstance(microbatches, int) or microbatches < 1:
            raise ConfigError(f"strategy.microbatches={microbatches} must be a positive integer, e.g. 4.")
        super().__init__(**kwargs)
        self.microbatches, self.schedule = microbatches, schedule
        self.runner: PipelineRunner | None = None

    @property
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        """Every stage reads the same batches: the first needs the tokens, the last the targets (a datamodule
        that makes its own `DistributedSampler`, like the text one, asks for these)."""
        return {"num_replicas": 1, "rank": 0}

    def configure_ddp(self) -> None:
        """Where DDP wraps the module: cut the model to this rank's stage and build its schedule.

        Called after a resumed run's weights were loaded into the whole model, and before the optimizer
        is built, so that the optimizer holds this stage's parameters only.
        """
        module = self.lightning_module
        assert module is not None and isinstance(module.model, Transformer)
        cut_model(module.model, self.global_rank, self.world_size)
        self.runner = PipelineRunner(
            module.model, self.global_rank, self.world_size, self.microbatches, self.schedule, self.root_device
        )
        trainer = module.trainer
        trainer.fit_loop._skip_backward = True  # the schedule runs backward inside the step
        # Every stage reads the batches a single process would, in its order: the datamodule's own seeded
        # shuffling, not a `DistributedSampler` that Lightning would otherwise swap in (as `Trainer(
        # use_distributed_sampler=False)` does; the data loaders are made after this setup).
        trainer._accelerator_connector.use_distributed_sampler = False
        plugin, runner = self.precision_plugin, self.runner
        elsewhere = runner.tied if runner.is_last else None

        def clip(optimizer: Any, clip_val: float) -> None:  # Lightning's clipping, over all stages' gradients
            clip_grad_norm(list(plugin.main_params(optimizer)), clip_val, elsewhere)

        plugin.clip_grad_by_norm = clip  # type: ignore[method-assign]

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """The pipelined step on the batch: the gradients of the full batch's mean loss; returns that loss."""
        module, runner = self.lightning_module, self.runner
        assert module is not None and runner is not None
        module.zero_grad(set_to_none=True)  # Lightning zeroes between step and backward; both happen here
        with self.precision_plugin.train_step_context():
            loss = runner.run(*lm_batch(args[0]), train=True)
        module.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """The batch's mean loss through the pipeline, into the stage's token-weighted `val_loss`."""
        module, runner = self.lightning_module, self.runner
        assert module is not None and runner is not None
        idx, targets, extra = lm_batch(args[0])
        with self.precision_plugin.val_step_context():
            loss = runner.run(idx, targets, extra, train=False)
        val_loss = cast(MeanMetric, module.val_loss)  # pretraining's and SFT's token-weighted mean
        val_loss.update(loss, weight=(targets != IGNORE_INDEX).sum())
        return None

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The whole model's state on rank 0 (the stages' shares put together), to be saved there."""
        assert self.lightning_module is not None
        return gather_state(self.lightning_module)

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        """Every stage's optimizer state, as a list by stage on rank 0 (each stage's own parameters)."""
        import torch.distributed as dist

        parts: list[Any] | None = [None] * self.world_size if self.is_global_zero else None
        dist.gather_object(super().optimizer_state(optimizer), parts, dst=0)
        return {"pipeline_stages": parts} if parts is not None else {}

    def load_optimizer_state_dict(self, checkpoint: Any) -> None:
        """Each stage takes its own optimizer state back from `optimizer_state`'s list."""
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"]):
            stages = state.get("pipeline_stages")
            if stages is None or len(stages) != self.world_size:
                raise ConfigError(
                    f"this checkpoint's optimizer state is not that of {self.world_size} pipeline stages; "
                    "resume it with the strategy and trainer.devices it was saved with."
                )
            optimizer.load_state_dict(stages[self.global_rank])


def check_pipeline(strategy: object, cfg: DictConfig, config: ModelConfig) -> None:
    """Refuse, before any process starts, a `strategy=pipeline` run that cannot work, in one sentence."""
    if not isinstance(strategy, PipelineStrategy):
        return
    devices, nodes = cfg.trainer.get("devices"), int(cfg.trainer.get("num_nodes", 1))
    if isinstance(devices, int) and devices * nodes > config.n_layer:
        raise ConfigError(
            f"strategy=pipeline puts one stage on each of {devices * nodes} processes (trainer.devices × "
            f"trainer.num_nodes) but model.n_layer={config.n_layer} blocks cannot fill them; use at most "
            f"{config.n_layer} devices or a deeper model."
        )
    if isinstance(devices, int) and strategy.schedule == "1f1b" and strategy.microbatches < devices * nodes:
        raise ConfigError(
            f"strategy.schedule=1f1b needs at least one microbatch per stage, but strategy.microbatches="
            f"{strategy.microbatches} < {devices * nodes} stages; raise strategy.microbatches."
        )
    batch = cfg.data.get("batch_size")
    if isinstance(batch, int) and batch % strategy.microbatches:
        raise ConfigError(
            f"strategy.microbatches={strategy.microbatches} must divide data.batch_size={batch}; "
            "pick a divisor of the batch size (or a batch size that is a multiple of it)."
        )
    target = str(cfg.stage.get("_target_"))
    if target not in PIPELINED_STAGES:
        raise ConfigError(
            f"strategy=pipeline trains stage=pretrain and stage=sft only, not {target.rsplit('.', 1)[-1]}."
        )
    if config.moe is not None:
        raise ConfigError(
            "strategy=pipeline runs dense models only; an MoE model needs strategy=expert_parallel or ddp."
        )
    if cfg.trainer.get("accumulate_grad_batches", 1) != 1:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={cfg.trainer.accumulate_grad_batches} with strategy=pipeline: "
            "microbatches already accumulate gradients; set strategy.microbatches instead."
        )
    if target.endswith("SFTStage"):
        if cfg.get("lora") and cfg.lora.get("r", 0):
            raise ConfigError(f"strategy=pipeline trains every weight; set lora.r=0 (it is {cfg.lora.r}).")
        if cfg.stage.get("eval_tasks"):
            raise ConfigError(
                "strategy=pipeline cannot decode task scores while training (the model is split over the "
                "processes); set stage.eval_tasks=false and score the model folder with evaluate.py afterwards."
            )
