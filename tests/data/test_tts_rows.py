"""Per-character durations from espeak's word starts, and the TTS batch layout."""

from __future__ import annotations

import pytest
import torch

from minigpt.data.speech.tts_rows import char_durations, collate_tts


def test_word_frames_are_shared_by_its_characters_and_add_up() -> None:
    # "4 7 1": words at characters 1, 3, 5 starting at 0, 235 and 607 ms; 95 frames of 10 ms.
    # "4 " owns frames 0–23 (24, split 12/12), "7 " frames 24–60 (37: 18/19 by cumulative rounding),
    # "1" frames 61–94 (34).
    durations = char_durations("4 7 1", [(1, 0), (3, 235), (5, 607)], n_frames=95, frame_ms=10.0)
    assert durations == [12, 12, 18, 19, 34]
    assert sum(durations) == 95


def test_leading_frames_and_clipped_words() -> None:
    # A first word that starts late keeps the silence before it; a start past the clip is clipped to its end.
    assert char_durations("ab", [(1, 50)], n_frames=10, frame_ms=10.0) == [5, 5]
    assert char_durations("a b", [(1, 0), (3, 500)], n_frames=10, frame_ms=10.0) == [5, 5, 0]
    with pytest.raises(ValueError, match="empty text"):
        char_durations("", [], n_frames=3, frame_ms=10.0)


def test_collate_pads_and_masks() -> None:
    rows = [
        (torch.tensor([3, 4]), torch.ones(5, 2), torch.tensor([2, 3])),
        (torch.tensor([5]), torch.ones(2, 2), torch.tensor([2])),
    ]
    batch = collate_tts(rows, pad_id=9)
    assert batch["ids"].tolist() == [[3, 4], [5, 9]]
    assert batch["valid"].tolist() == [[True, True], [True, False]]
    assert batch["mel"].shape == (2, 5, 2) and batch["frame_valid"].sum(1).tolist() == [5, 2]
    assert batch["durations"].tolist() == [[2, 3], [2, 0]]
