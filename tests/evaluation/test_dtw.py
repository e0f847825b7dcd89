"""DTW: a slowed-down copy is at distance 0; a different spectrogram is not; a worked 2 × 2 case."""

from __future__ import annotations

import pytest
import torch

from minigpt.evaluation.dtw import dtw_mean_distance


def test_time_stretching_costs_nothing_and_other_content_does() -> None:
    a = torch.randn(30, 8, generator=torch.Generator().manual_seed(0))
    slow = a.repeat_interleave(2, dim=0)  # the same frames, each held twice as long
    assert dtw_mean_distance(a, slow) == 0.0
    assert dtw_mean_distance(a, a.flip(0)) > 0.5


def test_worked_example() -> None:
    # a = [0, 1], b = [0, 3] (one band): costs |0−0|=0, |0−3|=3, |1−0|=1, |1−3|=2. Best path (0,0)→(1,1): 0 + 2
    # over 2 steps = 1.0; (0,0)→(1,0)→(1,1) costs 0 + 1 + 2 = 3 over 3 steps, not better in total.
    assert dtw_mean_distance(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [3.0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal bands"):
        dtw_mean_distance(torch.zeros(3, 2), torch.zeros(3, 4))
