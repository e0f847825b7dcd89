"""`Stage`: what every training stage shares — the model, its optimizer and schedule, init and export.

A stage is glue: it takes the shared `Transformer`, a loss from `minigpt.losses` and a batch, and logs.
Every stage stands on this class directly (never on another stage) and composes the small helpers it
needs: `chat_model.ChatModel` (chat tokens, LoRA, a reference model), `task_scoring` (task scores at
validation), `lm_steps.NextTokenSteps` (the pretraining objective), `minigpt.rl.rollout` (sampling).
What a stage takes from its data besides batches arrives through `attach_data` (see `stages.inputs`),
called by the task wrapper before `fit`. See docs/stages.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf

from minigpt.model.config import ModelConfig
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.model.moe import moe_metrics
from minigpt.model.transformer import Transformer
from minigpt.scale.sharding import build_optimizer, compile_blocks, shard_stage
from minigpt.scale.tensor_parallel import is_tensor_parallel, parallelize
from minigpt.stages.inputs import StageInputs
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError


class Stage(L.LightningModule):
    """Base LightningModule of all stages.

    Args:
        model_config: the `ModelConfig` (vocab size already set from the tokenizer).
        optim: the `optim` config node: `weight_decay`, and `_partial_` `optimizer` / `scheduler` nodes.
        tokenizer: saved next to the weights in the model folder.
        init_from: a model folder whose weights initialise the model (the previous stage's output).
    """

    # Set by the task wrapper from the top-level `compile` option: `torch.compile` each block.
    compile_model: bool = False
    # The logged metric (and min/max) the best checkpoint is chosen by.
    checkpoint_monitor: tuple[str, str] = ("val/loss", "min")
    # Trainer arguments the stage's way of training requires, whatever the `trainer` config says.
    trainer_overrides: ClassVar[dict[str, Any]] = {}
    # Whether the model writes text (sampled during validation and after training); stage=tts does not.
    writes_text: ClassVar[bool] = True

    def __init__(
        self,
        model_config: ModelConfig,
        optim: DictConfig | dict[str, Any],
        tokenizer: Tokenizer | None = None,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.optim_cfg = OmegaConf.create(optim) if isinstance(optim, dict) else optim
        self.model, folder_tokenizer = self.build_model(model_config, init_from)
        # How much to recompute is a way of training, not part of the architecture: the run's own setting
        # applies to a model loaded from `init_from` too (callers that only load `init_from` pass no config).
        if model_config is not None:
            self.model.config.activation_checkpointing = model_config.activation_checkpointing
        self.tokenizer = tokenizer or folder_tokenizer
        self.inputs = StageInputs()  # replaced by `attach_data` before fit

    def build_model(self, model_config: ModelConfig, init_from: str | None) -> tuple[Transformer, Tokenizer | None]:
        """The model to train and its folder's tokenizer: `init_from`'s, else a fresh `Transformer(model_config)`."""
        if init_from:
            return load_model_folder(init_from)
        return Transformer(model_config), None

    def attach_data(self, inputs: StageInputs) -> None:
        """Keep what the stage needs from its data (tasks, prompt lengths, loaders) and refuse data its model
        cannot use, with a `ConfigError`. Called by the task wrapper (`stages.inputs.prepare_fit`) before fit;
        a stage that checks or derives something from its data extends it (calling this first).
        """
        self.inputs = inputs

    @property
    def model_config(self) -> ModelConfig:
        """The config of the model being trained."""
        return self.model.config

    def aux_loss(self, aux: dict[str, Any]) -> torch.Tensor | float:
        """Sum of the auxiliary losses the model reported (e.g. MoE balancing); 0 for a dense model."""
        losses = aux.get("aux_loss")
        return sum(losses) if losses else 0.0

    def log_moe_metrics(self, aux: dict[str, Any], prefix: str = "train") -> None:
        """Log the per-layer router statistics an MoE model reports (`moe_metrics`); nothing if dense."""
        metrics = moe_metrics(aux, prefix)
        if metrics:
            self.log_dict(metrics, on_step=True, on_epoch=False)

    def configure_model(self) -> None:
        """Compile (`compile=true`) and shard (`strategy=fsdp`) or split (`strategy=tensor_parallel`) the model, once.

        Lightning calls this inside the strategy's setup, when FSDP2's device mesh exists, and before
        the optimizer is built, so the optimizer holds the sharded parameters.
        """
        if getattr(self, "_model_configured", False):
            return
        self._model_configured = True
        if self.compile_model:
            compile_blocks(self.model)
        if self.device_mesh is None:  # set by ModelParallelStrategy (strategy=fsdp|tensor_parallel) only
            return
        data_parallel = self.device_mesh["data_parallel"]
        if is_tensor_parallel(self):  # strategy=tensor_parallel: split first (PyTorch's 2-D recipe) ...
            parallelize(self.model, self.device_mesh["tensor_parallel"])
            if data_parallel.size() == 1:
                return
        # ... then FSDP2 over the data-parallel axis (strategy=fsdp, or tensor_parallel_size < devices)
        reshard = getattr(self.trainer.strategy, "reshard_after_forward", True)
        shard_stage(self, self.model, data_parallel, reshard_after_forward=reshard)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The optimizer's parameter groups; a stage that trains only some parameters (LoRA) overrides it.

        With `optim.muon_lr` set (optim=muon) the blocks' hidden matrices form their own Muon group, which
        carries its lr and decay itself, so that a wrapper (ZeRO-1) that fills in missing keys from AdamW's
        defaults cannot change them.
        """
        cfg = self.optim_cfg
        if cfg.get("muon_lr") is None:
            return self.model.param_groups(weight_decay)
        if self.device_mesh is not None:
            # Muon orthogonalises each whole matrix (a Newton–Schulz iteration over all its rows and columns),
            # and FSDP2 / tensor parallelism hold only shards of it: the default recipe's Muon group falls back
            # to AdamW here, said once, rather than refusing the strategy's own command.
            rank_zero_warn(
                "optim=muon: strategy=fsdp / tensor_parallel shard the hidden matrices that Muon orthogonalises "
                "whole, so every parameter trains with AdamW (as optim=adamw); use strategy=ddp to keep Muon."
            )
            return self.model.param_groups(weight_decay)
        hidden, *rest = self.model.param_groups(weight_decay, muon=True)
        return [{**hidden, "lr": cfg.muon_lr, "weight_decay": cfg.get("muon_weight_decay", 0.0)}, *rest]

    def build_optimizer(
        self, groups: list[dict[str, Any]], lr: float | None = None, total_steps: int | None = None
    ) -> dict[str, Any]:
        """`optim.optimizer` (AdamW) on `groups`, and `optim.scheduler` stepped per optimizer step.

        `lr` and `total_steps` replace the configured ones (a stage with two optimizers, like PPO's
        actor and critic, gives each its own).
        """
        cfg = self.optim_cfg
        lr = cfg.lr if lr is None else lr
        if lr <= 0:
            raise ConfigError(f"optim.lr={lr} must be positive (e.g. optim.lr=1e-3).")
        # ZeRO-1 (strategy=fsdp strategy.zero=1) wraps the same optimizer so that each rank keeps its share.
        strategy = self._trainer.strategy if self._trainer is not None else None
        shard_state = bool(getattr(strategy, "shards_optimizer_state", False))
        optimizer = build_optimizer(instantiate(cfg.optimizer, lr=lr, _convert_="all"), groups, shard_state)
        config: dict[str, Any] = {"optimizer": optimizer}
        if cfg.get("scheduler"):
            overrides = {} if total_steps is None else {"total_steps": total_steps}
            scheduler = instantiate(cfg.scheduler, **overrides)(optimizer)
            config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step", "frequency": 1}
        return config

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (or whatever `optim.optimizer` names) on decay/no-decay groups, stepped schedule."""
        return self.build_optimizer(self.param_groups(self.optim_cfg.weight_decay))

    def save_model_folder(self, folder: str | Path) -> Path:
        """Write the portable model folder (weights, config, tokenizer)."""
        return save_model_folder(folder, self.model, self.tokenizer)
