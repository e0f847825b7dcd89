"""Read a run's logged metrics back (the CSV logger's `metrics.csv`)."""

from __future__ import annotations

import csv
from pathlib import Path

Series = dict[str, list[tuple[int, float]]]


def find_metrics_csv(run_dir: Path) -> Path | None:
    """The newest `metrics.csv` anywhere under the run folder, if the run logged to CSV."""
    found = sorted(Path(run_dir).rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def read_metrics(path: Path) -> Series:
    """{metric name: [(step, value), …]} with empty cells skipped (each row holds a few metrics)."""
    series: Series = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                series.setdefault(key, []).append((step, float(value)))
    return series
