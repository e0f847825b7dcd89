"""Train a MiniGPT stage. `python train.py` pretrains the default model; see README for the config groups."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from minigpt.run import train


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` (default `val/loss`) for sweepers to optimise."""
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "val/loss")


if __name__ == "__main__":
    main()
