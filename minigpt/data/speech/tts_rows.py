"""What `stage=tts` learns from: characters, their durations in frames, and the reference log-mel frames.

Durations come from espeak-ng's word alignment (`Synthesis.words`: each word's first character and the
millisecond it starts at). Word i owns the frames from its start to the next word's start (the last word to
the end of the clip), and its characters, the spaces after it included, share them equally (the remainder
spread by rounding the cumulative shares, so that the durations add up to the clip's frames exactly).
Characters before the first word (none, for espeak's clips, which start at 0 ms) share the frames before it.
This is a coarser alignment than FastSpeech's phoneme durations (Ren et al. 2019, §3.3, from a teacher's
attention): within a word the decoder's attention, which sees all of the word's frames, places the sounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

# (character ids (T,), reference log-mel frames (F, n_mels), durations (T,) adding up to F)
TTSRow = tuple[Tensor, Tensor, Tensor]


def _shares(frames: int, parts: int) -> list[int]:
    """`frames` split into `parts` near-equal integers that add up exactly (cumulative rounding)."""
    return [round((k + 1) * frames / parts) - round(k * frames / parts) for k in range(parts)]


def char_durations(text: str, words: Sequence[tuple[int, int]], n_frames: int, frame_ms: float) -> list[int]:
    """Frames per character of `text` (adding up to `n_frames`) from espeak's word starts.

    Args:
        text: what was synthesised.
        words: (1-based character position of the word, start in ms), in order, as espeak reports them.
        n_frames: frames of the clip's log-mel features.
        frame_ms: milliseconds per frame (the front end's hop).
    """
    if not text:
        raise ValueError("An utterance with empty text has no characters to give durations to.")
    cuts = [0]  # character index where each chunk starts; chunk 0 is whatever precedes the first word
    starts = [0]  # its first frame
    for position, ms in words:
        char = min(max(position - 1, 0), len(text))
        frame = min(max(round(ms / frame_ms), starts[-1]), n_frames)  # clipped to the clip, never backwards
        if char <= cuts[-1]:  # a word at the very start (or a repeated position) continues the chunk before
            continue
        cuts.append(char)
        starts.append(frame)
    cuts.append(len(text))
    starts.append(n_frames)
    durations: list[int] = []
    for k in range(len(cuts) - 1):
        durations += _shares(starts[k + 1] - starts[k], cuts[k + 1] - cuts[k])
    return durations


def collate_tts(rows: Sequence[TTSRow], pad_id: int) -> dict[str, Tensor]:
    """Right-padded ids (B, T) and `valid` mask, mel frames (B, F, n_mels) and `frame_valid`, durations (B, T)."""
    ids = pad_sequence([r[0] for r in rows], batch_first=True, padding_value=pad_id)
    mel = pad_sequence([r[1] for r in rows], batch_first=True)
    durations = pad_sequence([r[2] for r in rows], batch_first=True)
    lengths = torch.tensor([len(r[0]) for r in rows])
    frames = torch.tensor([r[1].shape[0] for r in rows])
    return {
        "ids": ids,
        "valid": torch.arange(ids.shape[1])[None, :] < lengths[:, None],
        "mel": mel,
        "frame_valid": torch.arange(mel.shape[1])[None, :] < frames[:, None],
        "durations": durations,
    }
