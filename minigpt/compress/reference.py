"""Our own readable weight quantization: symmetric per-channel int8 and group-wise int4.

A weight matrix W (out × in) is cut into groups of `g` consecutive input weights of one row (per-channel:
g = in, one group per output row). Each group gets one scale s, and each weight becomes a small integer:

    s = max_j |w_j| / ((q_max − q_min) / 2)          int8: q ∈ [−128, 127] → s = absmax / 127.5
    q_j = clamp(round(w_j / s), q_min, q_max)         int4: q ∈ [−8, 7]     → s = absmax / 7.5
    ŵ_j = s · q_j                                     (dequantized; no zero point: the grid is symmetric)

Dividing by half the full range (127.5, not 127) is torchao's convention (`choose_qparams_affine`,
MappingType.SYMMETRIC): the grid is 0.4 % finer, and the one weight that lands on +127.5 is clamped to 127,
an error of half a step, as for every other weight. The rounding error of a weight is at most s/2, so a
group's error is bounded by its own largest weight: an outlier row or group does not spoil the others.
That is why int4 needs groups (g = 32 … 128): with 16 levels, one scale per 1000-wide row would round most
weights to 0 (Frantar et al. 2022, GPTQ §5; Dettmers & Zettlemoyer 2023, "The case for 4-bit precision").

Storage: int8 codes take one byte each; two int4 codes share one byte (`pack_int4`), so with fp32 scales a
weight costs 8 + 32/g bits (int8 per channel: ≈ 8 bits, 4× smaller than fp32) or 4 + 32/g bits (int4).
"""

from __future__ import annotations

import torch
from torch import Tensor

INT_RANGE = {8: (-128, 127), 4: (-8, 7)}


def _groups(weight: Tensor, group_size: int | None) -> Tensor:
    """(out, in) → (out, in / g, g); `group_size=None` is one group per row (per-channel)."""
    out_features, in_features = weight.shape
    g = group_size or in_features
    if in_features % g:
        raise ValueError(f"group_size={g} must divide the layer's input width {in_features}.")
    return weight.reshape(out_features, in_features // g, g)


def quantize_symmetric(weight: Tensor, bits: int, group_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Integer codes (out, in) as int8 and scales (out, in / g) of `weight` (out, in); see the module docstring."""
    q_min, q_max = INT_RANGE[bits]
    groups = _groups(weight.float(), group_size)  # (out, n_groups, g)
    absmax = groups.abs().amax(dim=-1, keepdim=True)  # (out, n_groups, 1)
    # An all-zero group would divide by 0: its scale is the smallest positive float32, and its codes are 0.
    scale = (absmax / ((q_max - q_min) / 2)).clamp(min=torch.finfo(torch.float32).eps)
    codes = torch.clamp(torch.round(groups / scale), q_min, q_max).to(torch.int8)
    return codes.reshape(weight.shape), scale.squeeze(-1)


def dequantize_symmetric(codes: Tensor, scale: Tensor) -> Tensor:
    """ŵ = s · q: codes (out, in), scales (out, in / g) → float32 (out, in)."""
    out_features, n_groups = scale.shape
    groups = codes.reshape(out_features, n_groups, -1).float() * scale.unsqueeze(-1)
    return groups.reshape(codes.shape)


def pack_int4(codes: Tensor) -> Tensor:
    """Two int4 codes per byte: q ∈ [−8, 7] is stored as q + 8 ∈ [0, 15], the even one in the low nibble."""
    flat = (codes.reshape(-1).to(torch.int16) + 8).to(torch.uint8)
    if flat.numel() % 2:
        raise ValueError(f"pack_int4 needs an even number of codes, got {flat.numel()}.")
    return flat[0::2] | (flat[1::2] << 4)


def unpack_int4(packed: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """The int8 codes `pack_int4` packed, reshaped to `shape`."""
    low, high = packed & 0x0F, packed >> 4
    flat = torch.stack([low, high], dim=-1).reshape(-1).to(torch.int8) - 8
    return flat.reshape(shape)
