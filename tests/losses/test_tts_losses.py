"""The TTS losses on numbers worked out by hand."""

from __future__ import annotations

import math

import torch

from minigpt.losses.tts import duration_mse, mel_l1


def test_mel_l1_averages_over_real_frames_and_bands() -> None:
    predicted = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [9.0, 9.0]]])  # (1, 3, 2); frame 2 is padding
    target = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    # |1|+|2|+|−1|+|1| = 5 over 2 frames × 2 bands: 1.25; the padded frame's 18 must not count.
    assert mel_l1(predicted, target, valid).item() == 1.25


def test_duration_mse_is_in_the_log_domain_and_skips_padding() -> None:
    log_predicted = torch.tensor([[0.0, math.log(4.0), 5.0]])
    durations = torch.tensor([[0, 1, 7]])
    valid = torch.tensor([[True, True, False]])
    # (0 − log 1)² = 0; (log 4 − log 2)² = (log 2)²; mean over the 2 real characters: (log 2)² / 2.
    assert math.isclose(duration_mse(log_predicted, durations, valid).item(), math.log(2.0) ** 2 / 2, rel_tol=1e-6)
