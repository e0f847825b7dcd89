"""Dynamic time warping: the distance between two spectrograms that say the same thing at different paces.

A synthesised utterance and its reference rarely have the same number of frames (the model predicts its own
durations), so frame-by-frame differences are meaningless. DTW (Sakoe & Chiba 1978) finds the monotonic
alignment of frames that minimises the summed frame distance:

    D[i, j] = c(i, j) + min(D[i−1, j], D[i, j−1], D[i−1, j−1]),   D[0, 0] = c(0, 0)

and the distance reported is the mean of c along that best path (total cost / path length), so it is in the
same units as one frame's distance and does not grow with the utterance's length.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dtw_mean_distance(a: Tensor, b: Tensor) -> float:
    """Mean L1 frame distance (averaged over bands) along the best DTW path between `a` (Fa, D) and `b` (Fb, D)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(
            f"dtw needs two non-empty (frames, bands) arrays of equal bands, got {tuple(a.shape)}, {tuple(b.shape)}."
        )
    cost = (torch.cdist(a.double()[None], b.double()[None], p=1)[0] / a.shape[1]).tolist()  # (Fa, Fb)
    inf = float("inf")
    # One row of (total cost, path length) at a time; plain floats: a Python loop over numpy scalars is ~5× slower.
    above = [(0.0, 0)] + [(inf, 0)] * len(cost[0])
    for row in cost:
        here = [(inf, 0)]
        for j, c in enumerate(row, start=1):
            best = min(above[j - 1], above[j], here[j - 1])  # diagonal, vertical, horizontal (ties: lowest cost first)
            here.append((best[0] + c, best[1] + 1))
        above = here
    total, length = above[-1]
    return total / length
