"""Log-mel spectrograms as a PNG: one panel per utterance, time across, mel bands up, with its caption."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training machine
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from minigpt.utils.io import atomic_write  # noqa: E402


def plot_spectrograms(panels: Sequence[tuple[str, Tensor]], out: Path, frame_seconds: float = 0.01) -> Path:
    """Write `panels` — (caption, log-mel features (n_mels, frames)) — one above the other into the PNG `out`."""
    if not panels:
        raise ValueError("plot_spectrograms needs at least one (caption, features) panel.")
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), squeeze=False)
    for ax, (caption, features) in zip(axes[:, 0], panels):
        values = features.detach().float().cpu().numpy()
        extent = (0.0, values.shape[1] * frame_seconds, 0, values.shape[0])
        ax.imshow(values, origin="lower", aspect="auto", extent=extent, cmap="magma")
        ax.set_title(caption, fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    atomic_write(Path(out), lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return Path(out)
