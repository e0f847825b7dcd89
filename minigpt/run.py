"""The training task behind `train.py`: compose → validate → build → fit → export, loggers always closed.

Kept apart from `train.py` so that tests and sweeps call `train(cfg)` directly with a composed config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from minigpt.model.config import ModelConfig
from minigpt.model.folder import resolve_model_folder
from minigpt.scale.loggers import close_loggers, publish_model_folder
from minigpt.scale.resume import resolve_ckpt_path
from minigpt.scale.sharding import unshard_stage
from minigpt.scale.strategy import build_strategy, distributed_job
from minigpt.stages.base import Stage
from minigpt.stages.inputs import prepare_fit
from minigpt.tokenizer.base import Tokenizer, load_tokenizer
from minigpt.utils.errors import ConfigError

log = logging.getLogger(__name__)


def validate_config(cfg: DictConfig) -> None:
    """Check the settings that would otherwise fail late (or silently), each with a one-line fix."""
    optim = cfg.optim
    if optim.lr is None or optim.lr <= 0:
        raise ConfigError(f"optim.lr={optim.lr} must be positive, e.g. optim.lr=1e-3.")
    if optim.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay={optim.weight_decay} must be ≥ 0.")
    if optim.get("warmup_steps", 0) < 0:
        raise ConfigError(f"optim.warmup_steps={optim.warmup_steps} must be ≥ 0.")
    seq_len, block = cfg.data.get("seq_len"), cfg.model.block_size
    if seq_len is not None and seq_len > block:
        raise ConfigError(
            f"data.seq_len={seq_len} is longer than the model's context model.block_size={block}; "
            f"set data.seq_len≤{block} or raise model.block_size."
        )
    max_steps = cfg.trainer.get("max_steps", -1)
    if not cfg.trainer.get("fast_dev_run") and (max_steps is None or max_steps <= 0):
        raise ConfigError(f"trainer.max_steps={max_steps} must be positive: MiniGPT trains by steps.")
    if cfg.get("init_from"):
        resolve_model_folder(cfg.init_from)
    resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.runs_dir)


def build_datamodule(cfg: DictConfig) -> Any:
    """Instantiate the `data` node; a `ConfigError` raised inside surfaces as itself, not wrapped by Hydra."""
    try:
        return instantiate(cfg.data, _recursive_=True)
    except InstantiationException as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


def build_tokenizer(cfg: DictConfig, datamodule: Any) -> Tokenizer:
    """The run's tokenizer: `tokenizer.path`, else the `init_from` model's, else built from the corpus."""
    if not cfg.tokenizer.get("path") and cfg.get("init_from"):
        folder = resolve_model_folder(cfg.init_from)
        if (folder / "tokenizer.json").exists():
            return load_tokenizer(folder)
    return instantiate(cfg.tokenizer, texts=datamodule.corpus.documents)


def build_model_config(cfg: DictConfig, tokenizer: Tokenizer) -> ModelConfig:
    """`ModelConfig` from the `model` node, with the vocabulary taken from the tokenizer."""
    fields = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(fields, dict)
    fields["vocab_size"] = fields.get("vocab_size") or tokenizer.vocab_size
    if fields["vocab_size"] < tokenizer.vocab_size:
        raise ConfigError(
            f"model.vocab_size={fields['vocab_size']} is smaller than the tokenizer's {tokenizer.vocab_size}; "
            "leave model.vocab_size unset (null) to take it from the tokenizer."
        )
    return ModelConfig.from_dict(fields)


def build_callbacks(cfg: DictConfig, stage: Stage | None = None) -> list[L.Callback]:
    """Instantiate every callback node under `callbacks` (a null entry switches one off).

    The default checkpoint keeps the best `val/loss`; a stage without a validation loss (PPO) names the
    metric it is judged by in `Stage.checkpoint_monitor`.
    """
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if not node:
            continue
        overrides = {}
        if name == "model_checkpoint" and stage is not None and node.get("monitor") == "val/loss":
            overrides = dict(zip(("monitor", "mode"), stage.checkpoint_monitor))
        callbacks.append(instantiate(node, **overrides))
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Instantiate every logger node under `logger`."""
    return [instantiate(node) for node in (cfg.get("logger") or {}).values() if node]


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job described by a composed `train.yaml` config; returns the final metrics.

    The loggers are finalised whatever happens, so a crash in one job of a sweep does not leave a
    logger (W&B, MLflow) open for the next.
    """
    validate_config(cfg)
    strategy = build_strategy(cfg)  # refuses impossible strategies (DeepSpeed on a CPU) before any work
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.runs_dir)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    tokenizer = build_tokenizer(cfg, datamodule)
    datamodule.attach_tokenizer(tokenizer)
    model_config = build_model_config(cfg, tokenizer)
    # _partial_: the stage's own options come from the config, the built objects are passed as they are.
    stage: Stage = instantiate(cfg.stage, _partial_=True)(
        model_config=model_config, optim=cfg.optim, tokenizer=tokenizer, init_from=cfg.init_from
    )
    stage.compile_model = bool(cfg.get("compile"))
    prepare_fit(stage, datamodule)  # data fitted to the model and handed to the stage; bad pairings fail here
    loggers = build_loggers(cfg)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        strategy=strategy,
        callbacks=build_callbacks(cfg, stage),
        logger=loggers or False,
        **stage.trainer_overrides,
    )
    status = "failed"
    with distributed_job():
        try:
            for logger in loggers:
                logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
            trainer.fit(stage, datamodule=datamodule, ckpt_path=ckpt_path)
            metrics = {
                key: float(value)
                for key, value in trainer.callback_metrics.items()
                if torch.is_tensor(value) and value.numel() == 1
            }
            unshard_stage(stage)  # FSDP: every rank takes part in gathering the full weights
            if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
                folder = stage.save_model_folder(Path(cfg.paths.output_dir) / "model")
                publish_model_folder(loggers, folder)
                report(cfg, stage, folder, metrics)
            status = "success"
        finally:
            close_loggers(loggers, status)
    return metrics


def report(cfg: DictConfig, stage: Stage, folder: Path, metrics: dict[str, float]) -> None:
    """Print final samples, the metrics and where the run lives."""
    from minigpt.inference.generate import GenerationConfig, generate

    console = Console()
    tokenizer = stage.tokenizer
    if cfg.get("final_samples") and tokenizer is not None:
        stage.eval()
        prompt = tokenizer.encode("\n")
        generator = torch.Generator(device=stage.device).manual_seed(cfg.seed)
        config = GenerationConfig(
            max_new_tokens=300, temperature=0.8, top_k=50, num_return_sequences=cfg.final_samples
        )
        for row in generate(stage.model, [prompt], config, generator=generator).token_lists():
            console.rule("sample")
            console.print(tokenizer.decode(prompt + row, skip_special=True), markup=False)
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith("val/")}
    console.rule("done")
    console.print(f"metrics: {shown}")
    console.print(f"run folder: {cfg.paths.output_dir}\nmodel folder: {folder}")
