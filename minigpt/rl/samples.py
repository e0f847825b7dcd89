"""`SampleTable`: the replies an RL stage sampled at validation, shown as a table so progress can be *read*.

PPO and GRPO (and the RL stages to come) collect a few (prompt, reply, reward, gold) rows per validation
and show them three ways: a rich table on the console, `samples/step_N.json` in the run folder, and a
W&B table (`val/samples`) when logging there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table
from torch import Tensor

from minigpt.rl.rollout import Rollout
from minigpt.utils.io import atomic_write_text


class SampleTable:
    """Up to `num_shown` rows per validation, from the first batches' replies.

    Args:
        stage_name: shown in the title ("PPO samples at step …").
        num_shown: rows kept per validation.
    """

    def __init__(self, stage_name: str, num_shown: int = 8) -> None:
        self.stage_name, self.num_shown = stage_name, num_shown
        self.rows: list[dict[str, Any]] = []

    def clear(self) -> None:
        """Forget the previous validation's rows."""
        self.rows = []

    def add(self, rollout: Rollout, metrics: dict[str, Tensor]) -> None:
        """Keep rows of `rollout` until `num_shown`, with their `reward` and, if measured, `gold`."""
        for i in range(min(len(rollout), self.num_shown - len(self.rows))):
            row: dict[str, Any] = {"prompt": rollout.prompts[i], "reply": rollout.completions[i]}
            for key in ("reward", "gold"):
                if key in metrics:
                    row[key] = round(float(metrics[key][i]), 4)
            self.rows.append(row)

    @rank_zero_only
    def show(self, module: L.LightningModule, iteration: int) -> None:
        """The rows as a table: console, `samples/step_N.json` in the run folder, a W&B table if logging there."""
        if not self.rows:
            return
        step = module.trainer.global_step
        columns = list(self.rows[0])
        table = Table(title=f"{self.stage_name} samples at step {step} (iteration {iteration})")
        for column in columns:
            table.add_column(column)
        for row in self.rows:
            table.add_row(*(str(row[c]) for c in columns))
        Console().print(table)
        folder = Path(module.trainer.default_root_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"step_{step:06d}.json", json.dumps(self.rows, indent=1))
        for logger in module.loggers:
            if hasattr(logger, "log_table"):  # WandbLogger
                logger.log_table(key="val/samples", columns=columns, data=[[r[c] for c in columns] for r in self.rows])
