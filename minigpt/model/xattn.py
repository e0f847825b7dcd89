"""Gated cross-attention (Flamingo, Alayrac et al. 2022, §2.2 and Fig. 4): the other way to let a frozen
LM see, compared with prefix tokens (`vision.fusion=xattn` against the default `prefix`).

Prefix fusion (LLaVA) writes the N projected patches of an image *into* the sequence, at N `<|image|>`
placeholders. Flamingo leaves the sequence as text — each image is one `<|image|>` tag token with its own
embedding — and inserts, before each LM block, a GATED XATTN-DENSE layer in which the text tokens attend
to the image vectors V (keys and values from the projected patches):

    y = x + tanh(α_attn) · XAttn(LN(x), V)          queries from the text, keys/values from V
    y = y + tanh(α_ffw)  · FFW(LN(y))

The gates α start at 0, so at initialisation the model is exactly the LM it was made from (tanh 0 = 0),
and training opens them gradually (Flamingo §2.2: "tanh-gating"). Which image a token may see: Flamingo
lets a token attend only to the image right before it; here a token sees every image whose tag comes at
or before it (a comparison of two digits needs both), and none after it, so the model stays causal.
Tokens before any image get 0 from the cross-attention.

The layers live beside the LM, not inside it: `attach_xattn` registers a forward pre-hook on each block
that adds the layer's output to the block's input, so the `Transformer` (and its model folder) is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from minigpt.model.transformer import Transformer


@dataclass
class MediaState:
    """The current call's image vectors for the cross-attention: `media` (B, M, C) and `visible` (B, T, M)
    (True where token t may attend image vector m); None outside a call (text only: the layers add 0)."""

    media: Tensor | None = None
    visible: Tensor | None = None


class GatedCrossAttention(nn.Module):
    """One GATED XATTN-DENSE layer: tanh-gated cross-attention to the images, then a tanh-gated MLP."""

    def __init__(self, width: int, n_head: int, hidden: int) -> None:
        super().__init__()
        if width % n_head:
            raise ValueError(f"Cross-attention width {width} is not divisible by its {n_head} heads.")
        self.n_head = n_head
        self.attn_norm = nn.LayerNorm(width)
        self.query = nn.Linear(width, width, bias=False)
        self.key_value = nn.Linear(width, 2 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.ffw_norm = nn.LayerNorm(width)
        self.ffw = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.attn_gate = nn.Parameter(torch.zeros(()))  # α_attn: tanh(0) = 0 → the LM unchanged at start
        self.ffw_gate = nn.Parameter(torch.zeros(()))

    def attend(self, x: Tensor, media: Tensor, visible: Tensor) -> Tensor:
        """softmax(q kᵀ/√d) v over the visible image vectors, per head; 0 for a token that sees none."""
        batch, steps, width = x.shape
        head = width // self.n_head
        q = self.query(x).view(batch, steps, self.n_head, head).transpose(1, 2)  # (B, H, T, d)
        k, v = self.key_value(media).view(batch, -1, 2, self.n_head, head).permute(2, 0, 3, 1, 4)  # (B, H, M, d)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(head)  # (B, H, T, M)
        scores = scores.masked_fill(~visible[:, None], torch.finfo(scores.dtype).min)
        sees_any = visible.any(dim=-1)[:, None, :, None]  # (B, 1, T, 1)
        weights = F.softmax(scores, dim=-1) * sees_any  # an all-masked row's uniform weights → 0
        return self.out((weights @ v).transpose(1, 2).reshape(batch, steps, width))

    def forward(self, x: Tensor, media: Tensor, visible: Tensor) -> Tensor:
        """(B, T, C) → (B, T, C): the two gated residual updates."""
        x = x + torch.tanh(self.attn_gate) * self.attend(self.attn_norm(x), media, visible)
        return x + torch.tanh(self.ffw_gate) * self.ffw(self.ffw_norm(x))


def media_for_rows(image_embeds: Tensor, input_ids: Tensor, image_id: int) -> tuple[Tensor, Tensor]:
    """Give each row its own images: (media (B, J·N, C), visible (B, T, J·N)) from the images stacked in
    reading order (n_images, N, C) and one `<|image|>` tag per image in `input_ids` (B, T).

    J is the most images any row has; a row with fewer gets zero vectors that nobody sees. Token t of a
    row sees image j's N vectors when image j's tag is at a position ≤ t.
    """
    tags = input_ids == image_id  # (B, T)
    per_row = tags.sum(dim=1)  # (B,)
    n_images, per_image, width = image_embeds.shape
    if int(per_row.sum()) != n_images:
        raise ValueError(
            f"The batch has {int(per_row.sum())} image tags but {n_images} images; with vision.fusion=xattn each "
            "image takes exactly one placeholder (data.image_tokens=1)."
        )
    batch, steps = input_ids.shape
    most = max(int(per_row.max()), 1)
    # slot j of row b holds the j-th image of that row: its index among all images is offset_b + j.
    offsets = torch.cumsum(per_row, 0) - per_row  # (B,)
    slot = torch.arange(most, device=input_ids.device)
    has = slot[None, :] < per_row[:, None]  # (B, J)
    index = (offsets[:, None] + slot[None, :]).clamp(max=max(n_images - 1, 0))
    media = image_embeds[index] * has[..., None, None]  # (B, J, N, C)
    # where[b, j]: the position of row b's j-th tag (T, past the end, for a missing slot)
    positions = torch.arange(steps, device=input_ids.device).expand(batch, steps)
    tag_positions = torch.where(tags, positions, steps).sort(dim=1).values[:, :most]  # (B, J)
    visible = (tag_positions[:, None, :] <= positions[:, :, None]) & has[:, None, :]  # (B, T, J)
    visible = visible.repeat_interleave(per_image, dim=2)  # (B, T, J·N)
    return media.reshape(batch, most * per_image, width), visible


def attach_xattn(lm: Transformer, layers: nn.ModuleList, state: MediaState) -> list[RemovableHandle]:
    """Run `layers[i]` on block i's input, through a forward pre-hook (the `Transformer` is not modified).

    With no media in `state` (a text-only call) the hooks leave the input as it is.
    """
    if len(layers) != len(lm.blocks):
        raise ValueError(f"{len(layers)} cross-attention layers for {len(lm.blocks)} blocks; give one per block.")

    def hook_for(layer: nn.Module) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if state.media is None or state.visible is None:
                return None
            return (layer(args[0], state.media, state.visible), *args[1:])

        return hook

    return [block.register_forward_pre_hook(hook_for(layer)) for block, layer in zip(lm.blocks, layers)]
