"""Plots a person would rather look at than read: loss curves of a run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training machine
import matplotlib.pyplot as plt  # noqa: E402

from minigpt.evaluation.logs import Series  # noqa: E402
from minigpt.utils.io import atomic_write  # noqa: E402


def plot_loss_curves(series: Series, out: Path, title: str = "") -> Path | None:
    """Train and validation loss against step (log-scale y), plus the learning rate on a twin axis."""
    losses = {k: v for k, v in series.items() if k.endswith("loss") and not k.startswith("lr")}
    if not losses:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in sorted(losses):
        steps, values = zip(*losses[name])
        ax.plot(steps, values, label=name, marker="o" if len(steps) < 30 else None, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    lr = next((v for k, v in series.items() if k.startswith("lr-")), None)
    if lr:
        twin = ax.twinx()
        twin.plot(*zip(*lr), color="grey", alpha=0.4, linewidth=1, label="learning rate")
        twin.set_ylabel("learning rate", color="grey")
    ax.legend(loc="upper right")
    ax.set_title(title or "loss curves")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out
