"""Pretraining speedrun: the classic nanoGPT CPU recipe against MiniGPT's default recipe, time to a val loss.

    python benchmarks/speedrun.py [--target 1.88] [--recipe optim=adamw ...] [--quick]

Two processes run at once, one thread each, so that whatever else loads the machine slows both alike:
* classic: `experiment=shakespeare_char_cpu` (4×4×128, block 64, batch 12, AdamW β₂ 0.99, lr 1e-3 → 1e-4
  cosine, warmup 100, no dropout, 2000 steps) in `plain_train`, the plain PyTorch loop of `loop_parity.py`;
* default: `python train.py`'s config (plus `--recipe` overrides, for ablations) in the Lightning stage,
  trainer and callbacks (`stage_train`).
Both draw batches from the same training split and are evaluated every `--eval-every` steps on the same
fixed validation windows (of the classic's block, 64). The clocks count training only: evaluation time is
subtracted. Two clocks per side: wall time (what the issue's goal is stated in) and the process's CPU time
(the work done, which other jobs on the machine barely change). The side that finishes first keeps running
untimed forward and backward passes of its model until the other is done (`keep_busy`), so that each side
shares the machine with the other for its whole run: without it the later side would run its last steps
alone, on a freed core, and its wall clock would flatter it. Reports the wall and CPU time and the steps at
which each first reaches the target (default: the classic's final val loss from this run), the final
losses and both ratios; writes `summary.json` and `speedrun.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from loop_parity import compose_train_cfg, plain_train, stage_train  # benchmarks/loop_parity.py, next to this script
from omegaconf import DictConfig, open_dict

from minigpt.data.text import StridedWindows
from minigpt.losses.lm import lm_loss
from minigpt.model.transformer import Transformer
from minigpt.run import build_datamodule, build_model_config, build_tokenizer
from minigpt.scale.peak_flops import has_avx512_bf16
from minigpt.utils.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["trainer.max_steps=30", "optim.warmup_steps=5"]  # --quick: the mechanics in seconds, not a result


def compose_cfg(overrides: list[str], out: Path) -> DictConfig:
    """`conf/train.yaml` with `overrides`, writing under `out`, quiet (no progress bar or model summary)."""
    quiet = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=csv"]
    cfg = compose_train_cfg([*overrides, *quiet], out)
    with open_dict(cfg):
        cfg.callbacks.progress_bar = None
    return cfg


class Scoreboard:
    """Evaluates a model on fixed validation windows every `every` steps and keeps a training-only clock."""

    def __init__(self, windows: StridedWindows, every: int, total: int, path: Path) -> None:
        self.windows, self.every, self.total, self.path = windows, every, total, path
        self.start_clocks()
        self.rows: list[dict[str, float]] = []

    def start_clocks(self) -> None:
        """Start (or restart) both clocks: wall time and this process's CPU time."""
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.eval_seconds = self.eval_cpu_seconds = 0.0

    @torch.no_grad()
    def val_loss(self, model: Transformer) -> float:
        """Mean next-token loss over every window (all windows have the same length, so a plain mean)."""
        was_training = model.training
        model.eval()
        losses = []
        for i in range(0, len(self.windows), 64):
            batch = [self.windows[j] for j in range(i, min(i + 64, len(self.windows)))]
            inputs, targets = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
            logits, _ = model(inputs)
            losses.append(lm_loss(logits, targets).item() * len(batch))
        model.train(was_training)
        return sum(losses) / len(self.windows)

    def after_step(self, step: int, model: Transformer) -> None:
        """Score after step `step` if it is on the cadence (or the last); the clock stops meanwhile."""
        if step % self.every and step != self.total:
            return
        now, cpu_now = time.perf_counter(), time.process_time()
        row = {
            "step": step,
            "seconds": now - self.start - self.eval_seconds,
            "cpu_seconds": cpu_now - self.cpu_start - self.eval_cpu_seconds,
            "val_loss": self.val_loss(model),
        }
        self.rows.append(row)
        atomic_write_text(self.path, json.dumps(self.rows))  # a killed run still leaves its curve so far
        self.eval_seconds += time.perf_counter() - now
        self.eval_cpu_seconds += time.process_time() - cpu_now


class ScoreboardCallback(L.Callback):
    """`Scoreboard` inside the Lightning trainer: the clock starts when training starts."""

    def __init__(self, board: Scoreboard) -> None:
        self.board = board

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.board.start_clocks()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.board.after_step(trainer.global_step, pl_module.model)


def prepare(
    cfg: DictConfig, eval_block: int
) -> tuple[Transformer, list[tuple[torch.Tensor, torch.Tensor]], StridedWindows]:
    """The seeded model, the training batches (the data module's own random windows) and the fixed val windows."""
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = build_datamodule(cfg)
    tokenizer = build_tokenizer(cfg, datamodule)
    datamodule.attach_tokenizer(tokenizer)
    model = Transformer(build_model_config(cfg, tokenizer))
    steps, batch = cfg.trainer.max_steps, datamodule.batch_size
    loader = torch.utils.data.DataLoader(
        datamodule.train_dataloader().dataset, batch_size=batch, sampler=range(steps * batch)
    )
    splits = datamodule.prepare()
    windows = StridedWindows(splits.load("val"), eval_block, datamodule.max_val_windows)
    return model, list(loader), windows


def run_role(role: str, overrides: list[str], eval_every: int, eval_block: int, out: Path, busy: bool) -> None:
    """One side of the race, in this process: write `<role>.json` (the scored curve and the recipe); with
    `busy`, then keep the core busy until the race ends this process (`keep_busy`)."""
    torch.set_num_threads(1)
    cfg = compose_cfg(overrides, out / role)
    if cfg.model.block_size < eval_block:
        raise SystemExit(f"model.block_size={cfg.model.block_size} of the {role} recipe is shorter than the "
                         f"classic's {eval_block}, so it cannot be scored on the same windows.")  # fmt: skip
    model, batches, windows = prepare(cfg, eval_block)
    board = Scoreboard(windows, eval_every, len(batches), out / f"{role}.rows.json")
    if role == "classic":
        optim = cfg.optim
        board.start_clocks()
        plain_train(
            model,
            batches,
            optim.lr,
            optim.weight_decay,
            tuple(optim.optimizer.betas),
            optim.warmup_steps,
            optim.min_lr_ratio,
            cfg.trainer.gradient_clip_val,
            on_step=lambda step: board.after_step(step, model),
        )
    else:
        stage_train(cfg, model, batches, callbacks=[ScoreboardCallback(board)])
    recipe = {
        "params": model.num_params(),
        "batch": len(batches[0][0]),
        "block": cfg.model.block_size,
        "steps": len(batches),
        "overrides": overrides,
    }
    # Written whole or not at all: the race reads it as the sign that this side is done.
    atomic_write_text(out / f"{role}.json", json.dumps({"recipe": recipe, "rows": board.rows}, indent=1))
    if busy:
        keep_busy(model, batches)


def keep_busy(model: Transformer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Untimed forward and backward passes over `batches`, until the race ends this process (or ends itself).

    The side that finishes first would otherwise hand its core to the other, whose remaining steps would then
    run faster than the ones before: the load each side sees would depend on who finishes first. No
    optimizer step: the scored model is already written.
    """
    model.train()
    race = os.getppid()
    while os.getppid() == race:  # an orphan (the race was killed) stops instead of spinning for ever
        for inputs, targets in batches[:10]:
            lm_loss(model(inputs)[0], targets).backward()
            model.zero_grad(set_to_none=True)


def first_reach(rows: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first scored point at or below `target`, or None."""
    return next((row for row in rows if row["val_loss"] <= target), None)


def plot(curves: dict[str, list[dict[str, float]]], target: float, path: Path) -> None:
    """Val loss against training wall time for both recipes, with the target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, rows in curves.items():
        ax.plot([r["seconds"] for r in rows], [r["val_loss"] for r in rows], marker=".", label=name)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f}")
    ax.set_xlabel("training wall time (s, 1 thread, evaluation excluded)")
    ax.set_ylabel("val loss (nats/char, 64-char windows)")
    ax.set_ylim(top=min(3.0, max(r["val_loss"] for rows in curves.values() for r in rows)))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def race(args: argparse.Namespace) -> dict[str, Any]:
    """Run both roles at once (two processes, one thread each) and compare them; returns the summary."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [*args.data, *(QUICK if args.quick else [])]
    roles = {
        "classic": ["experiment=shakespeare_char_cpu", *common],
        "default": [*common, *args.recipe],
    }
    # Both are scored on windows of the classic's context (64 tokens in nanoGPT's recipe).
    eval_block = compose_cfg(roles["classic"], out / "classic").model.block_size
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for role in roles:  # a previous race's results in the same folder would end this one at once
        (out / f"{role}.json").unlink(missing_ok=True)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                role,
                "--eval-every",
                str(args.eval_every),
                "--eval-block",
                str(eval_block),
                "--out",
                str(out),
                "--keep-busy",
                "--",
            ]
            + overrides,
            env=env,
        )
        for role, overrides in roles.items()
    ]
    # Each side writes `<role>.json` when its training is done and then keeps its core busy (`keep_busy`);
    # the race ends both once both are written. A side that exits by itself has failed. If the race itself
    # is stopped (Ctrl-C, or SIGTERM from `timeout`), it takes both sides with it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        while not all((out / f"{role}.json").exists() for role in roles):
            if any(proc.poll() is not None for proc in procs):
                raise SystemExit("a side of the race failed (its output is above)")
            time.sleep(0.5)
    finally:
        for proc in procs:  # both results are written (or the race is over): nothing to shut down gracefully
            proc.kill()
            proc.wait()
    results = {role: json.loads((out / f"{role}.json").read_text()) for role in roles}
    classic, default = results["classic"]["rows"], results["default"]["rows"]
    target = args.target if args.target is not None else classic[-1]["val_loss"]
    reach = {role: first_reach(res["rows"], target) for role, res in results.items()}
    summary: dict[str, Any] = {"target": target, "threads": 1, "roles": {}}
    for role, res in results.items():
        hit = reach[role]
        summary["roles"][role] = {
            **res["recipe"],
            "final_val_loss": res["rows"][-1]["val_loss"],
            "total_seconds": res["rows"][-1]["seconds"],
            "total_cpu_seconds": res["rows"][-1]["cpu_seconds"],
            "seconds_to_target": hit["seconds"] if hit else None,
            "cpu_seconds_to_target": hit["cpu_seconds"] if hit else None,
            "steps_to_target": hit["step"] if hit else None,
        }
    c, d = summary["roles"]["classic"], summary["roles"]["default"]
    if c["seconds_to_target"] and d["seconds_to_target"]:
        summary["time_ratio"] = d["seconds_to_target"] / c["seconds_to_target"]
        summary["cpu_time_ratio"] = d["cpu_seconds_to_target"] / c["cpu_seconds_to_target"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(
        {f"classic ({c['steps']} steps)": classic, f"default ({d['steps']} steps)": default},
        target,
        out / "speedrun.png",
    )
    return summary


def report(summary: dict[str, Any]) -> None:
    """Print the comparison."""
    print(f"torch {torch.__version__}, AVX-512 BF16: {'yes' if has_avx512_bf16() else 'no'}")
    print(f"target val loss {summary['target']:.4f} (1 thread per recipe, run concurrently)")
    print(f"{'recipe':<8} {'params':>8} {'batch×block':>11} {'steps':>6} {'final val':>9} {'total s':>8} "
          f"{'cpu s':>7} {'s to target':>11} {'cpu s to target':>15} {'steps to target':>15}")  # fmt: skip
    for role, r in summary["roles"].items():
        reached = r["steps_to_target"] is not None
        secs = f"{r['seconds_to_target']:.1f}" if reached else "—"
        cpu = f"{r['cpu_seconds_to_target']:.1f}" if reached else "—"
        steps = str(r["steps_to_target"]) if reached else "—"
        print(f"{role:<8} {r['params']:>8,} {str(r['batch']) + '×' + str(r['block']):>11} {r['steps']:>6} "
              f"{r['final_val_loss']:>9.4f} {r['total_seconds']:>8.1f} {r['total_cpu_seconds']:>7.1f} {secs:>11} "
              f"{cpu:>15} {steps:>15}")  # fmt: skip
    ratio, cpu_ratio = summary.get("time_ratio"), summary.get("cpu_time_ratio")
    print("time to target, default / classic: "
          + ("not reached" if ratio is None else f"{ratio:.3f} wall-clock, {cpu_ratio:.3f} CPU time"))  # fmt: skip


def main() -> None:
    """Parse arguments; run one role (internal) or the race."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=None, help="val loss to reach (default: classic's final)")
    parser.add_argument("--recipe", nargs="*", default=[], help="train.py overrides of the default (ablations)")
    parser.add_argument("--data", nargs="*", default=[], help="train.py overrides for both (e.g. another corpus)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="30 steps each: checks the mechanics only")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks" / "speedrun"))
    parser.add_argument("--eval-block", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=["classic", "default"], help=argparse.SUPPRESS)
    parser.add_argument("--keep-busy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        run_role(args.role, args.overrides, args.eval_every, args.eval_block, Path(args.out), args.keep_busy)
        return
    if args.eval_every <= 0:
        parser.error("--eval-every must be a positive number of steps")
    report(race(args))


if __name__ == "__main__":
    main()
