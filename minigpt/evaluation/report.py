"""`evaluate.py`: score a run or model folder — loss, perplexity, bits/byte, samples, plots → eval.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from minigpt.code.humaneval_eval import evaluate_humaneval
from minigpt.code.infill_eval import infill_report
from minigpt.evaluation.compare import ROWS, flatten, profile, ratios
from minigpt.evaluation.logs import find_metrics_csv, read_metrics
from minigpt.evaluation.moe_plots import plot_expert_load
from minigpt.evaluation.perplexity import evaluate_lm
from minigpt.evaluation.plots import plot_loss_curves, plot_rl_curves
from minigpt.evaluation.tasks import evaluate_tasks, evaluate_tasks_solved
from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.folder import load_model_folder, resolve_model_folder
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text


def run_config(run_dir: Path) -> DictConfig | None:
    """The composed training config Hydra saved in the run folder (`.hydra/config.yaml`), if any."""
    path = run_dir / ".hydra" / "config.yaml"
    return OmegaConf.load(path) if path.exists() else None  # type: ignore[return-value]


def data_config(cfg: DictConfig, trained: DictConfig | None, block_size: int) -> DictConfig | None:
    """The data node to evaluate on: `data=<option>` given to evaluate.py, else the one the run trained on.

    The node is resolved inside the training config (or a minimal stand-in for a bare model folder) so
    that its interpolations (`${model.block_size}`, `${paths.cache_dir}`, `${seed}`) find their values.
    """
    if cfg.get("data") is None:
        return trained.data if trained is not None else None
    base = OmegaConf.create({"seed": cfg.seed, "paths": cfg.paths}) if trained is None else trained.copy()
    with open_dict(base):
        base.pop("data", None)
    merged = OmegaConf.merge(base, {"model": {"block_size": block_size}, "data": cfg.data})
    return merged.data


def run_tasks(cfg: DictConfig, trained: DictConfig | None) -> Any:
    """The tasks the run trained on (`data.tasks`, same options and seed), else `cfg.tasks`."""
    nodes = trained.data.get("tasks") if trained is not None and "data" in trained else None
    return {name: instantiate(node) for name, node in nodes.items()} if nodes else list(cfg.tasks)


def task_scores(cfg: DictConfig, trained: DictConfig | None, model: Any, tokenizer: Any, tasks: Any) -> dict[str, Any]:
    """Gold-scored accuracy on held-out test prompts of `tasks` (`run_tasks`), for this model and the model it
    started from."""
    scores: dict[str, Any] = {}
    # "solved": the share answered fully right; for a code task, greedy pass@1 (every hidden test passes).
    scores["after"], scores["solved after"] = evaluate_tasks_solved(model, tokenizer, tasks, "test", cfg.task_prompts)
    init_from = trained.get("init_from") if trained is not None else None
    if init_from:
        base, base_tokenizer = load_model_folder(init_from)
        before = evaluate_tasks_solved(base, base_tokenizer or tokenizer, tasks, "test", cfg.task_prompts)
        scores["before"], scores["solved before"] = before
    return scores


def safety_report(
    cfg: DictConfig, trained: DictConfig | None, model: Any, tokenizer: Any, tasks: Any
) -> dict[str, Any]:
    """`minigpt.alignment.safety_eval`'s numbers for this model and, when the run had `init_from`, its start."""
    from minigpt.alignment.constitution import load_constitution
    from minigpt.alignment.safety_eval import safety_prompts, safety_scores

    constitution = load_constitution(cfg.constitution)
    names = list(tasks) if not isinstance(tasks, dict) else list(tasks.keys())
    split = cfg.get("safety_split", "test")
    prompts = safety_prompts(cfg.get("red_team"), constitution, names, cfg.safety_prompts, split)
    report = {"after": safety_scores(model, tokenizer, constitution, prompts, cfg.safety_prompts)}
    init_from = trained.get("init_from") if trained is not None else None
    if init_from:
        base, base_tokenizer = load_model_folder(init_from)
        report["before"] = safety_scores(base, base_tokenizer or tokenizer, constitution, prompts, cfg.safety_prompts)
    return report


def evaluate_run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `cfg.run` and write `eval.json` (+ `loss_curves.png`) next to it; returns the results."""
    run_dir = Path(cfg.run).expanduser()
    folder = resolve_model_folder(run_dir, field="run")
    out_dir = run_dir if folder != run_dir else folder
    model, tokenizer = load_model_folder(folder)
    if tokenizer is None:
        raise ConfigError(f"{folder} has no tokenizer.json; evaluation needs the tokenizer the model was trained with.")
    trained = run_config(run_dir)
    # A bare compressed folder is judged on the data and tasks of the run it is compared with.
    source = run_config(Path(cfg.compare).expanduser()) if cfg.get("compare") else None
    results: dict[str, Any] = {"model_folder": str(folder), "params": model.num_params()}

    data = data_config(cfg, trained or source, model.config.block_size) if cfg.get("eval", "lm") == "lm" else None
    # Perplexity needs a text corpus; chat, preference and prompt data are judged by `eval=tasks` instead.
    datamodule = instantiate(data) if data is not None else None
    if datamodule is not None and hasattr(type(datamodule), "val_bytes_per_token"):
        datamodule.batch_size = cfg.batch_size
        datamodule.attach_tokenizer(tokenizer)
        results.update(evaluate_lm(model, datamodule.val_dataloader(), datamodule.val_bytes_per_token))

    if cfg.num_samples > 0 and cfg.get("eval") != "tts":  # a TTS model's encoder writes no text
        prompt = tokenizer.encode(cfg.prompt, allow_special=True) or [tokenizer.eos_id or 0]
        config = GenerationConfig(**OmegaConf.to_container(cfg.sampling), num_return_sequences=cfg.num_samples)
        generator = torch.Generator().manual_seed(cfg.seed)
        rows = generate(model, [prompt], config, generator=generator, tokenizer=tokenizer).token_lists()
        results["samples"] = [tokenizer.decode(prompt + row, skip_special=True) for row in rows]

    tasks = run_tasks(cfg, trained or source)
    if cfg.get("eval") == "tasks":
        results["tasks"] = task_scores(cfg, trained, model, tokenizer, tasks)

    if cfg.get("eval") == "humaneval":
        options = OmegaConf.to_container(cfg.humaneval, resolve=True)
        results["humaneval"] = evaluate_humaneval(model, tokenizer, seed=cfg.seed, **options)  # type: ignore[arg-type]

    if cfg.get("eval") == "infill":  # docs/code.md: held-out single-line infilling, exact match
        options = OmegaConf.to_container(cfg.infill, resolve=True)
        node = data_config(cfg, trained, model.config.block_size)
        results["infill"] = infill_report(node, model, tokenizer, seed=cfg.seed, **options)  # type: ignore[arg-type]

    if cfg.get("eval") == "code":  # docs/code.md
        from minigpt.code.code_eval import evaluate_code

        results["code"] = evaluate_code(cfg, trained, model, tokenizer)

    if cfg.get("eval") == "vision":  # docs/multimodal.md
        from minigpt.evaluation.vision import evaluate_vision_run

        vision_data = trained.data if trained is not None and cfg.get("data") is None else cfg.get("data")
        results["vision"] = evaluate_vision_run(folder, vision_data, cfg.task_prompts, out_dir)
    if cfg.get("eval") == "speech":  # docs/speech.md
        from minigpt.evaluation.speech import evaluate_speech_run

        speech_data = trained.data if trained is not None and cfg.get("data") is None else cfg.get("data")
        results["speech"] = evaluate_speech_run(folder, speech_data, cfg.task_prompts, out_dir, cfg.get("decoder"))
    if cfg.get("eval") == "safety":
        results["safety"] = safety_report(cfg, trained, model, tokenizer, tasks)
    if cfg.get("eval") == "tts":  # docs/speech.md
        from minigpt.evaluation.tts import evaluate_tts_run

        results["tts"] = evaluate_tts_run(
            folder, trained.data if trained else None, cfg.tts.utterances, out_dir, cfg.tts.asr
        )

    if cfg.get("compare"):
        results["compare"] = compare_models(cfg, (folder, model, tokenizer), datamodule, tasks)

    metrics_csv = find_metrics_csv(run_dir)
    if metrics_csv is not None:
        series = read_metrics(metrics_csv)
        plots = [
            plot_loss_curves(series, out_dir / "loss_curves.png", title=str(run_dir)),
            plot_expert_load(series, out_dir / "expert_load.png"),  # None for a dense model
            plot_rl_curves(series, out_dir / "rl_curves.png", title=str(run_dir)),  # None unless RL
        ]
        results["plots"] = [str(p) for p in plots if p is not None]

    atomic_write_text(out_dir / "eval.json", json.dumps(results, indent=2))
    show(results, out_dir)
    return results


def compare_models(
    cfg: DictConfig, this: tuple[Path, Any, Any], datamodule: Any, tasks: Any
) -> dict[str, dict[str, Any]]:
    """`minigpt.evaluation.compare`'s profile of this model and of `cfg.compare`, and their ratios."""
    other_folder = resolve_model_folder(cfg.compare, field="compare")
    other, other_tokenizer = load_model_folder(other_folder, field="compare")

    def quality(model: Any, tokenizer: Any) -> dict[str, Any]:
        scores: dict[str, Any] = {}
        if datamodule is not None and hasattr(type(datamodule), "val_bytes_per_token"):
            scores["val/ppl"] = evaluate_lm(model, datamodule.val_dataloader())["val/ppl"]
        if cfg.get("eval") == "tasks":
            scores["tasks"] = evaluate_tasks(model, tokenizer, tasks, "test", cfg.task_prompts)
        return scores

    folder, model, tokenizer = this
    mine = profile(model, folder, tokenizer, cfg.prompt, quality)
    theirs = profile(other, other_folder, other_tokenizer or tokenizer, cfg.prompt, quality)
    return {"this": mine, "compared": theirs, "ratio": ratios(mine, theirs)}


def show_comparison(console: Console, comparison: dict[str, dict[str, Any]]) -> None:
    """The comparison as one table: metric, this model, the compared one, this / compared."""
    this, other = flatten(comparison["this"]), flatten(comparison["compared"])
    table = Table(title=f"{comparison['this']['folder']} against {comparison['compared']['folder']}")
    for column in ("metric", "this", "compared", "ratio"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key in [k for k in ROWS if k in this] + sorted(k for k in this if k.startswith("tasks/")):
        ratio = comparison["ratio"].get(key)
        cells = [f"{v:,.0f}" if v >= 100 or float(v).is_integer() else f"{v:.4f}" for v in (this[key], other[key])]
        table.add_row(key, *cells, f"{ratio:.3f}×" if ratio is not None else "")
    console.print(table)


def show(results: dict[str, Any], out_dir: Path) -> None:
    """Print the numbers as a table, then the samples."""
    console = Console()
    table = Table(title="evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else f"{value:,}")
    console.print(table)
    if "compare" in results:
        show_comparison(console, results["compare"])
    if "humaneval" in results:
        humaneval = results["humaneval"]
        passes = ", ".join(f"{key} {value:.3f}" for key, value in humaneval.items() if key.startswith("pass@"))
        title = f"HumanEval ({humaneval['problems']} problems, n={humaneval['n']})"
        console.print(f"{title}: {passes}; statuses {humaneval['statuses']}")
    if "infill" in results:
        infill = results["infill"]
        scores = ", ".join(
            f"{k} {v:.3f}" for k, v in infill.items() if k.startswith(("exact", "starts", "middle_loss"))
        )
        console.print(f"infill ({infill['n']} held-out {infill['unit']}s): {scores}")

    if "code" in results:
        from minigpt.code.code_eval import show_code

        show_code(console, results["code"])
    for when, scores in results.get("safety", {}).items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if isinstance(v, float))
        console.print(f"safety ({when}): {shown}", markup=False)
    for when, scores in results.get("tasks", {}).items():
        console.print(f"task scores ({when}): " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    vision = results.get("vision", {})
    for key, score in vision.get("scores", {}).items():
        console.print(
            f"vision {key}: accuracy {score['accuracy']:.3f} (text-only prior {score['prior']:.3f}, n={score['n']})"
            + (f", token F1 {score['token_f1']:.3f}" if "token_f1" in score else "")
        )
    if "tts" in results:
        from minigpt.evaluation.tts import show_tts

        show_tts(console, results["tts"])
    for i, text in enumerate(results.get("samples", [])):
        console.rule(f"sample {i}")
        console.print(text, markup=False)
    for decoder, groups in results.get("speech", {}).get("scores", {}).items():
        for group, values in groups.items():
            shown = ", ".join(f"{v}: WER {s['wer']:.3f} CER {s['cer']:.3f} (n={s['n']})" for v, s in values.items())
            console.print(f"speech {decoder} by {group}: {shown}", markup=False)
    speech = results.get("speech", {})
    plots = [
        *results.get("plots", []),
        *([vision["grid"]] if "grid" in vision else []),
        *([speech["spectrograms"]] if "spectrograms" in speech else []),
    ]
    console.print(f"wrote {out_dir / 'eval.json'}" + "".join(f"\nwrote {p}" for p in plots))
