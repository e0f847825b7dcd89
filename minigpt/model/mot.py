"""Mixture-of-Transformers (Liang et al. 2024, arXiv 2411.04996): per-modality weights, shared attention.

MoT unties the non-embedding weights of a Transformer by modality: each token goes through the
feed-forward network and the layer norms of *its* modality, while self-attention stays global over the
whole mixed sequence (§3, Algorithm 1). Here the modalities are text and image tokens, and MoT unties
each block's two norms and its MLP; attention (query/key/value and output projections) stays shared —
the paper also unties those, which this version leaves out. Compute per token is that of the dense
model: each token visits exactly one copy.

`apply_mot(lm, state)` swaps each block's `attn_norm`, `ffn_norm` and `ffn` for a `ModalitySwitch` that
holds a `text` and an `image` copy (both starting as the dense weights, so a MoT model starts as the model
it was made from). The switch reads which tokens are image tokens from a `ModalityState` that the caller
(`VisionLanguageModel.forward`) fills for the duration of a call; with no mask set (a text-only call,
the KV-cache decoder) every token takes the text weights. The `Transformer` itself is unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from minigpt.model.transformer import Transformer

SWITCHED = ("attn_norm", "ffn_norm", "ffn")


@dataclass
class ModalityState:
    """Which tokens of the current call are image tokens: bool (B, T), or None (all text)."""

    image_mask: Tensor | None = None


class ModalitySwitch(nn.Module):
    """`text(x)` for text tokens and `image(x)` for image tokens, each token through one copy only."""

    def __init__(self, dense: nn.Module, state: ModalityState) -> None:
        super().__init__()
        self.text = dense
        self.image = copy.deepcopy(dense)
        self.state = state  # a plain object: not a parameter, not in the state dict

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) → (B, T, C), routed by `state.image_mask`."""
        mask = self.state.image_mask
        if mask is None or not bool(mask.any()):
            return self.text(x)
        flat = x.reshape(-1, x.shape[-1])  # (B·T, C)
        where = mask.reshape(-1)
        image_rows, text_rows = where.nonzero().squeeze(1), (~where).nonzero().squeeze(1)
        out = flat.new_zeros(flat.shape)
        # index_put (not in place) keeps autograd: each row gets exactly its own modality's output.
        out = out.index_put((text_rows,), self.text(flat[text_rows]))
        out = out.index_put((image_rows,), self.image(flat[image_rows]))
        return out.view_as(x)


def apply_mot(lm: Transformer, state: ModalityState) -> Transformer:
    """Untie each block's norms and MLP by modality, in place (both copies start as the dense weights)."""
    if lm.config.moe is not None:
        raise ValueError("Mixture-of-Transformers on a mixture-of-experts model is not supported; use a dense model.")
    for block in lm.blocks:
        for name in SWITCHED:
            setattr(block, name, ModalitySwitch(getattr(block, name), state))
    return lm


def is_mot(lm: Transformer) -> bool:
    """Whether `apply_mot` was applied to `lm`."""
    return any(isinstance(m, ModalitySwitch) for m in lm.modules())


def split_mot_state(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A MoT LM's state dict → (the dense LM's, with the text weights; the image weights, keyed as in the
    dense LM). The text half is an ordinary model folder's weights, so every text tool reads it."""
    text: dict[str, Tensor] = {}
    image: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if len(parts) > 3 and parts[0] == "blocks" and parts[2] in SWITCHED and parts[3] in ("text", "image"):
            plain = ".".join(parts[:3] + parts[4:])
            (text if parts[3] == "text" else image)[plain] = value
        else:
            text[key] = value
    return text, image


@torch.no_grad()
def load_image_weights(lm: Transformer, image: dict[str, Tensor]) -> None:
    """Copy image weights (keyed as in the dense LM, from `split_mot_state`) into a MoT LM's image copies."""
    params = dict(lm.named_parameters()) | dict(lm.named_buffers())
    for key, value in image.items():
        parts = key.split(".")
        params[".".join(parts[:3] + ["image"] + parts[3:])].copy_(value)
