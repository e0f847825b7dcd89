"""Train a MiniGPT stage. `python train.py` pretrains the default model; see docs/commands.md for every command."""

from __future__ import annotations

from omegaconf import DictConfig

from minigpt.cli.command import command
from minigpt.run import train


@command("train")
def main(cfg: DictConfig) -> float | None:
    """Train on the composed config; returns `optimized_metric` (default `val/loss`) for sweepers to optimise."""
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "val/loss")


if __name__ == "__main__":
    main()
