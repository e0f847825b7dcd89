"""Plots a person would rather look at than read: loss curves of a run, and an RL run's reward, gold and KL."""

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


# Panels of an RL run: (title, metric name suffixes drawn in it). Train curves are per iteration, `val/`
# ones per validation; the `_init` values (the starting model) are drawn as dashed horizontal lines.
RL_PANELS = (
    ("reward", ("reward",)),
    ("gold score", ("gold",)),
    ("KL to reference (nats / reply)", ("kl",)),
    # GRPO also logs the length of its wrong replies (Dr. GRPO's length bias shows there).
    ("reply length (tokens)", ("response_length", "response_length_wrong")),
)


def plot_rl_curves(series: Series, out: Path, title: str = "") -> Path | None:
    """Reward, gold score, KL and reply length of an RL run (PPO, GRPO) against step, train and validation."""
    if "train/reward" not in series:
        return None
    panels = [(name, keys) for name, keys in RL_PANELS if any(f"train/{k}" in series for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            if f"train/{key}" in series:  # noisy per iteration: faint, with a moving average on top
                steps, values = zip(*series[f"train/{key}"])
                line = ax.plot(steps, values, alpha=0.3, linewidth=0.8)[0]
                window = max(1, len(values) // 20)
                smooth = moving_average(list(values), window)
                ax.plot(steps, smooth, color=line.get_color(), label=f"train/{key} (mean of {window})")
            if f"val/{key}" in series:
                steps, values = zip(*series[f"val/{key}"])
                ax.plot(steps, values, "o-", label=f"val/{key}", linewidth=1.2, markersize=4)
            if f"val/{key}_init" in series:
                ax.axhline(series[f"val/{key}_init"][0][1], linestyle="--", color="grey", label="start (val)")
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "RL curves")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def moving_average(values: list[float], window: int) -> list[float]:
    """The mean of the last `window` values at each point (fewer at the start)."""
    return [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
            for i in range(len(values))]  # fmt: skip


def plot_runs_metric(runs: dict[str, Series], key: str, out: Path, title: str = "", window: int = 10) -> Path | None:
    """One metric (e.g. `train/response_length_wrong`) of several runs on one axis, each smoothed over `window`.

    Compares variants that differ in one switch, such as GRPO's `loss_type=grpo` against `dr_grpo`.
    """
    drawn = {label: series[key] for label, series in runs.items() if key in series}
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in drawn.items():
        steps, values = zip(*points)
        line = ax.plot(steps, values, alpha=0.25, linewidth=0.8)[0]
        smooth = moving_average(list(values), window)
        ax.plot(steps, smooth, color=line.get_color(), label=f"{label} (mean of {window})")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(title or key)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out
