"""Training throughput: the MiniGPT pretrain stage against a plain PyTorch loop, side by side.

    python benchmarks/train_throughput.py [--steps 60] [--shapes nano small] [--precisions fp32 bf16]

For each shape and precision: the same initial weights and the same batches go through (a) the Lightning
stage with the trainer and callbacks `train.py` composes and (b) `plain_train` (model, AdamW, clipping,
nothing else). Prints tokens/s of each, their ratio, the loss of both at the last step (they must agree),
and model FLOPs utilisation against this machine's measured matmul peak.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

import torch
from loop_parity import compose_train_cfg, plain_train, stage_train  # benchmarks/loop_parity.py, next to this script
from rich.console import Console
from rich.table import Table

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.scale.peak_flops import measure_matmul_flops

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    # nanoGPT's CPU Shakespeare shape, char vocabulary.
    "nano": dict(model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=96), batch=12),
    # gpt_small with a BPE-sized vocabulary.
    "small": dict(model=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=8192), batch=8),
}


def tokens_per_s(times: list[float], tokens_per_step: int, skip: int) -> float:
    """Steady-state rate: steps after the first `skip` (warm-up), median step time."""
    durations = [b - a for a, b in zip(times[skip:], times[skip + 1 :])]
    return tokens_per_step / statistics.median(durations)


def compose_cfg(shape: dict, precision: str, steps: int, out: Path):
    """The `train.py` config for this shape (no validation, no checkpoint: the plain loop has neither)."""
    m = shape["model"]
    overrides = [
        "optim=adamw",  # the plain loop's optimizer: this measures the framework, not Muon's extra matmuls
        f"model.n_layer={m['n_layer']}",
        f"model.n_head={m['n_head']}",
        f"model.n_embd={m['n_embd']}",
        f"model.block_size={m['block_size']}",
        "model.dropout=0.0",
        f"data.batch_size={shape['batch']}",
        f"trainer.max_steps={steps}",
        f"trainer.precision={precision}",
    ]
    return compose_train_cfg(overrides, out)


def main() -> None:
    """Run every shape × precision and print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=10, help="warm-up steps left out of the timing")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks" / "train_throughput"))
    args = parser.parse_args()

    console = Console(width=200)
    console.print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )
    peaks = {
        name: measure_matmul_flops(dtype, size=1024, seconds=1.0)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    console.print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    table = Table(title="training throughput: MiniGPT stage vs plain PyTorch loop")
    for col in (
        "shape",
        "precision",
        "plain tok/s",
        "stage tok/s",
        "stage/plain",
        "plain MFU",
        "stage MFU",
        "loss plain",
        "loss stage",
    ):
        table.add_column(col, justify="right")

    for name in args.shapes:
        shape = SHAPES[name]
        m = shape["model"]
        torch.manual_seed(0)
        model = Transformer(ModelConfig(**m, dropout=0.0))
        gen = torch.Generator().manual_seed(0)
        seqs = torch.randint(0, m["vocab_size"], (args.steps, shape["batch"], m["block_size"] + 1), generator=gen)
        batches = [(s[:, :-1], s[:, 1:]) for s in seqs]
        tokens = shape["batch"] * m["block_size"]
        flops_per_token = model.flops_per_token(m["block_size"])
        for precision in args.precisions:
            lightning_precision = "32-true" if precision == "fp32" else "bf16-mixed"
            cfg = compose_cfg(shape, lightning_precision, args.steps, Path(args.out) / f"{name}-{precision}")
            optim = cfg.optim
            plain_losses, plain_times = plain_train(
                copy.deepcopy(model),
                batches,
                optim.lr,
                optim.weight_decay,
                tuple(optim.optimizer.betas),
                optim.warmup_steps,
                optim.min_lr_ratio,
                cfg.trainer.gradient_clip_val,
                bf16=precision == "bf16",
            )
            stage_losses, stage_times = stage_train(cfg, copy.deepcopy(model), batches)
            plain_rate = tokens_per_s(plain_times, tokens, args.skip)
            stage_rate = tokens_per_s(stage_times, tokens, args.skip)
            peak = peaks[precision]
            table.add_row(
                name,
                precision,
                f"{plain_rate:,.0f}",
                f"{stage_rate:,.0f}",
                f"{stage_rate / plain_rate:.3f}",
                f"{plain_rate * flops_per_token / peak:.1%}",
                f"{stage_rate * flops_per_token / peak:.1%}",
                f"{plain_losses[-1]:.5f}",
                f"{stage_losses[-1]:.5f}",
            )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
