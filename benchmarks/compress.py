"""Compression side by side with the fp32 model it came from: sizes, perplexity, decoding speed.

    OMP_NUM_THREADS=2 python benchmarks/compress.py --run <pretrain run> --out <dir>
    ... --parts curve --gradual-steps 300    # perplexity against sparsity (magnitude, Wanda, gradual) → PNG

Every variant is written as a model folder (what `python -m minigpt.compress.quantize|prune` write) and
measured on the run's own validation windows and on the same prompt; ratios are against fp32. The curve's
gradual points fine-tune the model for `--gradual-steps` steps with `prune.schedule=gradual` (train.py),
so "fine-tuned, 0 %" is their baseline: gradual pruning gets training that one-shot pruning does not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt.cli.moe_prune import token_batches  # noqa: E402
from minigpt.compress.calibration import input_norms  # noqa: E402
from minigpt.compress.methods import METHODS, quantize_model  # noqa: E402
from minigpt.compress.prune import prune_unstructured  # noqa: E402
from minigpt.compress.structured import prune_heads, prune_neurons  # noqa: E402
from minigpt.data.corpora import ShakespearePlays  # noqa: E402
from minigpt.evaluation.compare import profile, tokens_per_second  # noqa: E402
from minigpt.evaluation.perplexity import evaluate_lm  # noqa: E402
from minigpt.evaluation.report import run_config  # noqa: E402
from minigpt.model.folder import load_model_folder, resolve_model_folder, save_model_folder  # noqa: E402

PROMPT = "ROMEO:\n"


def validation(run: Path, tokenizer: Any) -> Any:
    """A function giving the run's validation loader (its own data config, windows and seed)."""
    datamodule = instantiate(run_config(run).data)
    datamodule.batch_size = 32
    datamodule.attach_tokenizer(tokenizer)
    return datamodule.val_dataloader


def measure(model: Any, folder: Path, tokenizer: Any, loader: Any) -> dict[str, Any]:
    """The comparison row of one model folder."""
    return profile(model, folder, tokenizer, PROMPT, lambda m, _: {"val/ppl": evaluate_lm(m, loader())["val/ppl"]})


def race(models: dict[str, Any], prompt: list[int], new_tokens: int, rounds: int) -> dict[str, float]:
    """Decoding tokens/s of each model, the best of `rounds` rounds that alternate the models, so that a
    change in the machine's load (it is shared) hits every model alike."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, model in models.items():
            best[name] = max(best.get(name, 0.0), tokens_per_second(model, prompt, new_tokens, repeats=1))
    return best


def table(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown: each variant against fp32."""
    base = rows["fp32"]
    lines = [
        "| variant | params | on disk | × smaller | in memory | × smaller | val ppl | Δ ppl | tokens/s | × fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['params']:,} | {row['disk_bytes'] / 1e6:.2f} MB "
            f"| {base['disk_bytes'] / row['disk_bytes']:.2f} "
            f"| {row['memory_bytes'] / 1e6:.2f} MB | {base['memory_bytes'] / row['memory_bytes']:.2f} "
            f"| {row['val/ppl']:.3f} | {100 * (row['val/ppl'] / base['val/ppl'] - 1):+.2f}% "
            f"| {row['tokens_per_s']:,.0f} | {row['tokens_per_s'] / base['tokens_per_s']:.2f} |"
        )
    return "\n".join(lines)


def variants(run: Path, out: Path, loader: Any, rounds: int) -> dict[str, dict[str, Any]]:
    """fp32, every quantization method, and heads / neurons pruned by half; tokens/s from one `race`."""
    source = resolve_model_folder(run)
    model, tokenizer = load_model_folder(source)
    rows = {"fp32": measure(model, source, tokenizer, loader)}
    models = {"fp32": model}
    calibration = list(token_batches(ShakespearePlays(), tokenizer, model.config.block_size, 20_000))
    for method in METHODS:
        model, _ = load_model_folder(source)
        layers = quantize_model(model, method)
        model.config.extra["quantization"] = {"method": method, "group_size": 32, "layers": layers}
        folder = save_model_folder(out / method, model, tokenizer)
        loaded, _ = load_model_folder(folder)  # measured as `evaluate.py` would see it: read back from disk
        rows[method] = measure(loaded, folder, tokenizer, loader)
        models[method] = loaded
        print(method, rows[method], flush=True)
    for name, prune in [("heads 50%", prune_heads), ("neurons 50%", prune_neurons)]:
        model, _ = load_model_folder(source)
        prune(model, input_norms(model, calibration), 0.5)
        folder = save_model_folder(out / name.split()[0], model, tokenizer)
        rows[name] = measure(model, folder, tokenizer, loader)
        models[name] = model
        print(name, rows[name], flush=True)
    speeds = race(models, tokenizer.encode(PROMPT), new_tokens=60, rounds=rounds)
    for name, speed in speeds.items():
        rows[name]["tokens_per_s"] = speed
    return rows


def curve(run: Path, out: Path, loader: Any, sparsities: list[float], steps: int) -> dict[str, dict[str, float]]:
    """Validation perplexity at each sparsity: one-shot magnitude and Wanda, and gradual pruning in training.

    Each point is added to `out/curve.json` as soon as it is measured, and points already there are kept:
    a run cut short by its time limit continues where it stopped.
    """
    path = out / "curve.json"
    points: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
    source = resolve_model_folder(run)
    model, tokenizer = load_model_folder(source)
    calibration = list(token_batches(ShakespearePlays(), tokenizer, model.config.block_size, 20_000))
    for sparsity in [s for s in sparsities if str(s) not in points]:
        point = {}
        for method in ("magnitude", "wanda"):
            model, _ = load_model_folder(source)
            norms = input_norms(model, calibration) if method == "wanda" else None
            prune_unstructured(model, method, sparsity, norms, None)
            point[method] = evaluate_lm(model, loader())["val/ppl"]
        run_dir = out / f"gradual_{sparsity}"
        command = [sys.executable, str(ROOT / "train.py"), f"init_from={source}", f"hydra.run.dir={run_dir}",
                   f"trainer.max_steps={steps}", f"prune.schedule={'gradual' if sparsity else 'null'}",
                   f"prune.final_sparsity={sparsity}", "trainer.enable_progress_bar=false", "final_samples=0",
                   "callbacks.samples.num_samples=0", "trainer.val_check_interval=" + str(steps)]  # fmt: skip
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        pruned, _ = load_model_folder(run_dir / "model")
        point["gradual"] = evaluate_lm(pruned, loader())["val/ppl"]
        points[str(sparsity)] = point
        path.write_text(json.dumps(points, indent=2))
        print(sparsity, point, flush=True)
    return {k: points[k] for k in sorted(points, key=float)}


def plot(points: dict[str, dict[str, float]], fp32: float, steps: int, path: Path) -> None:
    """Perplexity against sparsity, one line per method, fp32 as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"magnitude": "magnitude (one-shot)", "wanda": "Wanda (one-shot)", "gradual": f"gradual ({steps} steps)"}
    sparsities = [100 * float(s) for s in points]
    for method, label in labels.items():
        ax.plot(sparsities, [p[method] for p in points.values()], marker="o", label=label)
    ax.axhline(fp32, color="grey", linestyle="--", label="fp32, unpruned")
    ax.set_xlabel("sparsity of the block weights (%)")
    ax.set_ylabel("validation perplexity (log scale)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("gpt_nano (char, Shakespeare): perplexity against sparsity")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    """Parse arguments, measure, print the markdown tables, write results.json (and the curve's PNG)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder with .hydra/config.yaml and model/")
    parser.add_argument("--out", type=Path, required=True, help="where the variants' folders and results go")
    parser.add_argument("--parts", nargs="+", choices=["table", "curve"], default=["table"])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--gradual-steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the decoding race")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "compression_sparsity.png")
    args = parser.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    _, tokenizer = load_model_folder(resolve_model_folder(args.run))
    loader = validation(args.run, tokenizer)
    results_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "table" in args.parts:
        results["variants"] = variants(args.run, args.out, loader, args.rounds)
        results_path.write_text(json.dumps(results, indent=2))
        print(table(results["variants"]))
    if "curve" in args.parts:
        points = curve(args.run, args.out, loader, args.sparsities, args.gradual_steps)
        results["curve"] = points
        results_path.write_text(json.dumps(results, indent=2))
        fp32 = evaluate_lm(load_model_folder(resolve_model_folder(args.run))[0], loader())["val/ppl"]
        plot(points, fp32, args.gradual_steps, args.png)
        print("| sparsity | magnitude | Wanda | gradual |\n|---|---|---|---|")
        for sparsity, point in points.items():
            print(
                f"| {float(sparsity):.0%} | {point['magnitude']:.3f} | {point['wanda']:.3f} | {point['gradual']:.3f} |"
            )


if __name__ == "__main__":
    main()
