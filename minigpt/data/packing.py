"""Batches of chat examples: right-padding, or packing several short examples into one sequence.

An example is a pair of equal-length lists (inputs, targets): targets are the inputs shifted left by one,
with `IGNORE_INDEX` wherever no loss applies (prompt tokens, padding).

Packing (as in T5, Raffel et al. 2020 §3.1.2) fills each row of `seq_len` with whole examples instead of
padding each example to the longest one, so no compute is spent on padding. To keep the examples
independent, each row carries a segment id per token; attention is causal *within* a segment only (a
block-diagonal causal mask) and positions restart at 0 in every segment, so a packed example sees exactly
what it would see alone, and its loss is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minigpt.losses.lm import IGNORE_INDEX

Example = tuple[list[int], list[int]]
PackedRow = tuple[list[int], list[int], list[int]]  # inputs, targets, segment ids


def pack(examples: list[Example], seq_len: int) -> list[PackedRow]:
    """Greedy next-fit packing, in order: rows of (inputs, targets, segment ids), each ≤ `seq_len` long."""
    rows: list[PackedRow] = []
    inputs: list[int] = []
    targets: list[int] = []
    segments: list[int] = []
    for x, y in examples:
        if len(x) > seq_len:
            raise ValueError(f"An example of {len(x)} tokens does not fit seq_len={seq_len}.")
        if len(inputs) + len(x) > seq_len:
            rows.append((inputs, targets, segments))
            inputs, targets, segments = [], [], []
        segment = segments[-1] + 1 if segments else 0
        inputs, targets, segments = inputs + x, targets + y, segments + [segment] * len(x)
    if inputs:
        rows.append((inputs, targets, segments))
    return rows


def block_causal_mask(segments: Tensor) -> Tensor:
    """(B, T) segment ids → boolean (B, 1, T, T): query i may attend key j iff j ≤ i and same segment."""
    T = segments.shape[1]
    same = segments.unsqueeze(2) == segments.unsqueeze(1)  # (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()
    return (same & causal).unsqueeze(1)


def segment_positions(segments: Tensor) -> Tensor:
    """(B, T) segment ids → (B, T) position of each token within its own segment (restarting at 0)."""
    T = segments.shape[1]
    index = torch.arange(T, device=segments.device).expand_as(segments)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    # Index of the segment's first token, carried forward with a running max, then subtracted.
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - first


def collate_padded(batch: list[Example], pad_id: int) -> dict[str, Tensor]:
    """Right-pad to the longest example; padding gets `pad_id` inputs and ignored targets.

    Right padding needs no mask: under causal attention real tokens never look at later pads.
    """
    T = max(len(x) for x, _ in batch)
    inputs = torch.full((len(batch), T), pad_id, dtype=torch.long)
    targets = torch.full((len(batch), T), IGNORE_INDEX, dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        inputs[i, : len(x)] = torch.tensor(x)
        targets[i, : len(y)] = torch.tensor(y)
    return {"input_ids": inputs, "targets": targets}


def collate_packed(batch: list[PackedRow], pad_id: int, seq_len: int) -> dict[str, Tensor]:
    """Packed rows → input_ids, targets, positions and the block-diagonal causal `attn_mask`.

    The padding at the end of a row is one more segment of its own, so every query attends at least
    itself (a fully masked row would make softmax produce NaN).
    """
    B = len(batch)
    inputs = torch.full((B, seq_len), pad_id, dtype=torch.long)
    targets = torch.full((B, seq_len), IGNORE_INDEX, dtype=torch.long)
    segments = torch.full((B, seq_len), -1, dtype=torch.long)
    for i, (x, y, s) in enumerate(batch):
        inputs[i, : len(x)] = torch.tensor(x)
        targets[i, : len(y)] = torch.tensor(y)
        segments[i, : len(s)] = torch.tensor(s)
        segments[i, len(s) :] = (s[-1] + 1) if s else 0
    return {
        "input_ids": inputs,
        "targets": targets,
        "positions": segment_positions(segments),
        "attn_mask": block_causal_mask(segments),
    }


def collate_indexed(
    batch: list[tuple[int, Any]], collate: Callable[[list[Any]], dict[str, Tensor]]
) -> dict[str, Tensor]:
    """`collate` of the rows of (index, row) pairs, plus `index` (B,): each row's position in its split.

    The index names a row whatever order the loader draws it in, so a value computed once per row (a
    teacher's cached distributions, `minigpt.stages.distill_cache`) can be looked up from any batch.
    """
    out = collate([row for _, row in batch])
    out["index"] = torch.tensor([index for index, _ in batch], dtype=torch.long)
    return out
