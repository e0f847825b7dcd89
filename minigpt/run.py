"""The training task behind `train.py`: compose → validate → build → fit → export, loggers always closed.

Kept apart from `train.py` so that tests and sweeps call `train(cfg)` directly with a composed config.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from minigpt.callbacks.console import route_lightning_logs
from minigpt.cli.command import require_values
from minigpt.model.config import ModelConfig
from minigpt.model.folder import resolve_model_folder
from minigpt.pipeline.upstream import command_line_overrides, with_upstream
from minigpt.run_config import check_types
from minigpt.scale import expert_parallel
from minigpt.scale.loggers import close_loggers, continue_logs, publish_model_folder
from minigpt.scale.pipeline_strategy import check_pipeline
from minigpt.scale.resume import checkpoint_step, resolve_ckpt_path
from minigpt.scale.sharding import unshard_stage
from minigpt.scale.strategy import build_strategy, distributed_job
from minigpt.scale.tensor_parallel import check_before_launch
from minigpt.stages.base import Stage
from minigpt.stages.inputs import prepare_fit
from minigpt.tokenizer.base import Tokenizer, load_tokenizer
from minigpt.utils.errors import ConfigError

log = logging.getLogger(__name__)


def validate_config(cfg: DictConfig) -> None:
    """Check the settings that would otherwise fail late (or silently), each with a one-line fix."""
    require_values(cfg)
    check_types(cfg)
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
    if cfg.get("lora") and cfg.lora.get("r", 0) and "lora" not in cfg.stage:
        raise ConfigError(
            f"lora.r={cfg.lora.r} but this stage ({cfg.stage._target_.rsplit('.', 1)[-1]}) trains no adapters; "
            "LoRA applies to the stages whose config takes it: sft, reward, dpo, ppo, grpo (or set lora.r=0)."
        )
    if cfg.get("init_from"):
        folder = resolve_model_folder(cfg.init_from, field="init_from")
        quantized = ModelConfig.load(folder / "config.json").extra.get("quantization")
        lora_on = bool(cfg.get("lora") and cfg.lora.get("r", 0) and "lora" in cfg.stage)
        if quantized and not lora_on:  # QLoRA trains adapters over a frozen quantized base, never the base
            raise ConfigError(
                f"init_from={cfg.init_from} holds a {quantized['method']}-quantized model, whose weights cannot "
                "train; train LoRA adapters over it instead (QLoRA), e.g. stage=sft lora.r=8."
            )
    resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir, cfg.paths.runs_dir, cfg.get("resume"))


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

    The best checkpoint keeps the best `val/loss`; a stage without a validation loss (PPO) names the
    metric it is judged by in `Stage.checkpoint_monitor`. `trainer.enable_progress_bar=false` drops the
    progress-bar callback (Lightning refuses the two together).
    """
    callbacks = []
    bar_off = cfg.trainer.get("enable_progress_bar") is False
    for name, node in (cfg.get("callbacks") or {}).items():
        if not node or (bar_off and name == "progress_bar"):
            continue
        overrides = {}
        if stage is not None and node.get("monitor") == "val/loss":
            overrides = dict(zip(("monitor", "mode"), stage.checkpoint_monitor))
        callbacks.append(instantiate(node, **overrides))
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    """Instantiate every logger node under `logger`."""
    return [instantiate(node) for node in (cfg.get("logger") or {}).values() if node]


def model_summary(stage: Stage) -> str:
    """One line for the model: parameters (trained ones if fewer), depth, width, context, vocabulary."""
    config = stage.model.config
    total = sum(p.numel() for p in stage.model.parameters())
    trained = sum(p.numel() for p in stage.model.parameters() if p.requires_grad)
    share = "" if trained == total else f", {trained / 1e6:.3f}M trained"
    return (
        f"model: {total / 1e6:.3f}M parameters{share}; {config.n_layer} layers × {config.n_embd} wide, "
        f"context {config.block_size}, vocabulary {config.vocab_size}"
    )


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job described by a composed `train.yaml` config; returns the final metrics.

    The loggers are finalised whatever happens, so a crash in one job of a sweep does not leave a
    logger (W&B, MLflow) open for the next.
    """
    route_lightning_logs()
    validate_config(cfg)  # the user's own mistakes fail before any upstream model is built …
    cfg = with_upstream(cfg)  # a stage given no init_from / reward model / data gets them built (docs/pipeline.md)
    validate_config(cfg)  # … and the filled-in config is checked again
    strategy = build_strategy(cfg)  # refuses impossible strategies (DeepSpeed on a CPU) before any work
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir, cfg.paths.runs_dir, cfg.get("resume"))
    resume_step = checkpoint_step(ckpt_path) if ckpt_path else None
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    tokenizer = build_tokenizer(cfg, datamodule)
    datamodule.attach_tokenizer(tokenizer)
    model_config = build_model_config(cfg, tokenizer)
    check_before_launch(strategy, cfg.trainer, model_config)  # a TP degree that cannot split the heads
    expert_parallel.check_before_launch(strategy, cfg.trainer, model_config)  # experts that ranks cannot split
    check_pipeline(strategy, cfg, model_config)  # more pipeline stages than blocks, microbatches that do not divide
    # _partial_: the stage's own options come from the config, the built objects are passed as they are.
    stage: Stage = instantiate(cfg.stage, _partial_=True)(
        model_config=model_config, optim=cfg.optim, tokenizer=tokenizer, init_from=cfg.init_from
    )
    stage.compile_model = bool(cfg.get("compile"))
    prepare_fit(stage, datamodule)  # data fitted to the model and handed to the stage; bad pairings fail here
    if cfg.trainer.get("enable_model_summary"):
        log.info(model_summary(stage))  # Lightning's table reports FLOPs it cannot count: one line instead
    loggers = build_loggers(cfg)
    continue_logs(loggers, cfg.paths.output_dir, resume_step or 0)  # a resumed run continues its history
    if ckpt_path:
        log.info(f"resumed from step {resume_step if resume_step is not None else '?'}: {ckpt_path}")
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        strategy=strategy,
        callbacks=build_callbacks(cfg, stage),
        logger=loggers or False,
        enable_model_summary=False,
        **stage.trainer_overrides,
    )
    status = "failed"
    with distributed_job():
        try:
            for logger in loggers if not cfg.trainer.get("fast_dev_run") else []:  # fdr promises no logs
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
                report(cfg, stage, folder, metrics, datamodule)
            status = "success"
        finally:
            close_loggers(loggers, status)
    return metrics


def report(cfg: DictConfig, stage: Stage, folder: Path, metrics: dict[str, float], datamodule: Any = None) -> None:
    """Print final samples, then the run's numbers, where it lives and the next commands for it."""
    if cfg.get("final_samples") and stage.tokenizer is not None and stage.writes_text:
        print_final_samples(cfg, stage, datamodule)
    shown = {k: round(v, 4) for k, v in sorted(metrics.items()) if k.startswith(("train/", "val/"))}
    log.info("done: " + (", ".join(f"{k}={v}" for k, v in shown.items()) or "no metrics were logged"))
    log.info(f"run folder: {cfg.paths.output_dir}")
    log.info(f"model folder: {folder}")
    log.info("next:")
    for command in next_commands(cfg, Path(cfg.paths.output_dir), stage):
        log.info(f"  {command}")


def print_final_samples(cfg: DictConfig, stage: Stage, datamodule: Any) -> None:
    """A chat model answers a few of its tasks' prompts; a language model continues a newline."""
    from minigpt.inference.generate import GenerationConfig, generate

    console = Console()
    tokenizer = stage.tokenizer
    assert tokenizer is not None
    stage.eval()
    tasks = getattr(datamodule, "tasks", None)
    if tasks:  # SFT on tasks: show what the run was trained to do, scored by the task's gold scorer
        from minigpt.evaluation.tasks import task_results

        for name, task in dict(tasks).items():
            for prompt, reply, score in task_results(stage.model, tokenizer, task, split="val", n=cfg.final_samples):
                console.rule(f"{name} (score {score:g})")
                console.print(f"user: {prompt}\nassistant: {reply}", markup=False)
        return
    prompt = tokenizer.encode("\n")
    generator = torch.Generator(device=stage.device).manual_seed(cfg.seed)
    config = GenerationConfig(**OmegaConf.to_container(cfg.sampling), num_return_sequences=cfg.final_samples)
    for row in generate(stage.model, [prompt], config, generator=generator, tokenizer=tokenizer).token_lists():
        console.rule("sample")
        console.print(tokenizer.decode(prompt + row, skip_special=True), markup=False)


def next_commands(cfg: DictConfig, run: Path, stage: Stage) -> list[str]:
    """The two or three commands a user runs next on this run: evaluate it, use it, the next stage on it."""
    kind = type(stage).__module__.rsplit(".", 1)[-1]  # pretrain, sft, reward, dpo, ppo, grpo, rest, moe
    model = run / "model"
    evaluate = f"python evaluate.py run={run}" + (
        " eval=tasks"
        if kind in ("sft", "dpo", "ppo", "grpo", "rest")
        else " eval=vision"
        if kind == "multimodal"
        else " eval=safety"
        if kind == "cai_sl"
        else " eval=speech"
        if kind == "speech"
        else ""
    )
    following = {
        "pretrain": [
            f'python -m minigpt.cli.generate run={run} prompt="ROMEO:"',
            f"python train.py stage=sft init_from={model} data=tasks/arithmetic",
        ],
        "moe": [f'python -m minigpt.cli.generate run={run} prompt="ROMEO:"'],
        "sft": [
            f"python -m minigpt.cli.chat run={run}",
            f"python train.py stage=grpo init_from={model} data=prompts/arithmetic   # RL on a task's gold scorer",
            f"python -m minigpt.cli.preference_pairs run={model} task=arithmetic n=4000 out=prefs.jsonl   # then:",
            f"python train.py stage=dpo init_from={model} data=preferences data.path=prefs.jsonl",
        ],
        "reward": [f"python train.py stage=ppo init_from=<sft model> stage.reward_model={model} data=prompts/<task>"],
        "dpo": [f"python -m minigpt.cli.chat run={run}"],
        "ppo": [f"python -m minigpt.cli.chat run={run}"],
        "grpo": [f"python -m minigpt.cli.chat run={run}"],
        "rest": [f"python -m minigpt.cli.chat run={run}"],
        "multimodal": [
            f"python train.py stage=multimodal init_from={model} data=vision/mix vision.train=all   # stage 2"
        ],
        "tts": [f'python -m minigpt.speak run={run} text="4 7 1" out=out.wav png=out.png'],
        "speech": [f"python -m minigpt.transcribe run={run} audio=clip.wav"],
        "cai_sl": [
            f"python -m minigpt.alignment.ai_feedback run={model} red_team=<red folder> out=prefs.jsonl   # then:",
            f"python train.py stage=dpo init_from={model} data=preferences data.path=prefs.jsonl",
        ],
    }
    steps = 2 * int(cfg.trainer.max_steps)
    longer = " ".join([*map(shlex.quote, this_run_overrides()), f"resume={run}", f"trainer.max_steps={steps}"])
    return [evaluate, *following.get(kind, []), f"python train.py {longer}   # train on"]


def this_run_overrides() -> list[str]:
    """The command-line overrides this run was started with, less those that pick its folder or length."""
    dropped = ("hydra.run.dir=", "ckpt_path=", "resume=", "trainer.max_steps=")
    return [o for o in command_line_overrides() if not o.startswith(dropped)]
