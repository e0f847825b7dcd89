"""Evaluate a run or model folder: `python evaluate.py run=outputs/train/<date_time>`."""

from __future__ import annotations

from omegaconf import DictConfig

from minigpt.cli.command import command
from minigpt.evaluation.report import evaluate_run


@command("evaluate")
def main(cfg: DictConfig) -> None:
    """Evaluate the run `cfg.run` names (see conf/evaluate.yaml)."""
    evaluate_run(cfg)


if __name__ == "__main__":
    main()
