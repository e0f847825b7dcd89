"""Train a MiniGPT stage. `python train.py` pretrains the default model; see README for the config groups."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from minigpt.run import train
from minigpt.run_config import check_group_choices


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` (default `val/loss`) for sweepers to optimise."""
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "val/loss")


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])  # `data=nope`: list every option, the nested tasks/* and prompts/* too
    main()
