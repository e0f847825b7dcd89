"""Heatmap of expert load per MoE layer, from the router statistics a training run logged.

`MoELayer` reports, and `Stage.log_moe_metrics` logs, `train/moe/layer{L}/load/expert{e}`: the share of
routing each expert received. The heatmap shows share × E, so 1 means perfectly balanced, 0 an expert
nobody uses and E an expert that takes every token.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from minigpt.evaluation.logs import Series
from minigpt.utils.io import atomic_write


def expert_load_matrix(series: Series, prefix: str = "train", last_rows: int = 10) -> tuple[list[int], np.ndarray]:
    """(MoE layer ids, (layers, E) mean load share over the last `last_rows` logged values).

    `series` is a run's logged metrics as `minigpt.evaluation.logs.read_metrics` returns them. Returns
    `([], empty)` when there are no MoE load metrics (a dense model).
    """
    pattern = re.compile(rf"^{re.escape(prefix)}/moe/layer(\d+)/load/expert(\d+)$")
    cells = {tuple(map(int, m.groups())): values for name, values in series.items() if (m := pattern.match(name))}
    if not cells:
        return [], np.zeros((0, 0))
    layers = sorted({layer for layer, _ in cells})
    matrix = np.zeros((len(layers), 1 + max(expert for _, expert in cells)))
    for (layer, expert), values in cells.items():
        matrix[layers.index(layer), expert] = np.mean([value for _, value in values[-last_rows:]])
    return layers, matrix


def plot_expert_load(series: Series, out_png: str | Path, prefix: str = "train", last_rows: int = 10) -> Path | None:
    """Draw the expert-load heatmap (layers × experts) of a run's logged metrics into `out_png`.

    Returns the PNG's path, or `None` (and writes nothing) when the run logged no MoE statistics.
    """
    layers, matrix = expert_load_matrix(series, prefix, last_rows)
    if not layers:
        return None
    relative = matrix * matrix.shape[1]  # 1 = the uniform share 1/E
    fig = Figure(figsize=(max(4.0, 0.35 * matrix.shape[1] + 2.0), 1.0 + 0.5 * len(layers)))
    ax = fig.add_subplot()
    image = ax.imshow(relative, aspect="auto", cmap="viridis", vmin=0.0)
    ax.set_xlabel("expert")
    ax.set_ylabel("layer")
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_title("expert load × E (1 = balanced)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    out = Path(out_png)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return out
