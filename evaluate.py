"""Evaluate a run or model folder: `python evaluate.py run=outputs/train/<date_time>`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from minigpt.evaluation.report import evaluate_run


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    evaluate_run(cfg)


if __name__ == "__main__":
    main()
