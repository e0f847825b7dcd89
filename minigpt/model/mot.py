"""Mixture-of-Transformers (Liang et al. 2024, arXiv 2411.04996): per-modality weights, shared attention.

MoT unties the non-embedding weights of a Transformer by modality: each token goes through the
feed-forward network, the layer norms and the attention projections of *its* modality, while
self-attention itself stays global over the whole mixed sequence (§3, Algorithm 1): every token's query,
key and value come from its own modality's projections, then one softmax runs over all keys of the
sequence, and each token's attention output goes through its modality's output projection. Here the
modalities are text and image tokens. Compute per token is that of the dense model: each token visits
exactly one copy of every untied module.

`apply_mot(lm, state)` swaps each block's `attn_norm`, `ffn_norm`, `ffn` and its attention's `qkv`, `proj`
(and the QK-norm gains `q_norm`, `k_norm` where the model has them) for a `ModalitySwitch` that holds a
`text` and an `image` copy (both starting as the dense weights, so a MoT model starts as the model it was
made from). The switch reads which tokens are image tokens from a `ModalityState` that the caller
(`VisionLanguageModel.forward`) fills for the duration of a call; with no mask set (a text-only call,
the KV-cache decoder) every token takes the text weights. The `Transformer` itself is unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from minigpt.model.transformer import Transformer

# The untied modules, as paths inside a block. `CausalSelfAttention` calls `qkv` on (B, T, C), `proj` on
# (B, T, nh·hs) and the QK-norms on (B, nh, T, hs): a switch routes every one of those rows by its token.
SWITCHED = ("attn_norm", "ffn_norm", "ffn", "attn.qkv", "attn.proj", "attn.q_norm", "attn.k_norm")


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
        """(B, T, C) → (B, T, C'), or per head (B, H, T, C) → (B, H, T, C'), routed by `state.image_mask`."""
        mask = self.state.image_mask
        if mask is None or not bool(mask.any()):
            return self.text(x)
        # The (B, T) mask, broadcast over any dims between batch and time (attention heads).
        where = mask.view(mask.shape[0], *([1] * (x.dim() - 3)), mask.shape[1]).expand(x.shape[:-1]).reshape(-1)
        flat = x.reshape(-1, x.shape[-1])  # (rows, C)
        image_rows, text_rows = where.nonzero().squeeze(1), (~where).nonzero().squeeze(1)
        text_out, image_out = self.text(flat[text_rows]), self.image(flat[image_rows])
        out = text_out.new_zeros(flat.shape[0], text_out.shape[-1])
        # index_put (not in place) keeps autograd: each row gets exactly its own modality's output.
        out = out.index_put((text_rows,), text_out).index_put((image_rows,), image_out)
        return out.view(*x.shape[:-1], out.shape[-1])


def apply_mot(lm: Transformer, state: ModalityState) -> Transformer:
    """Untie each block's norms, MLP and attention projections by modality, in place (both copies start as
    the dense weights). A module the model lacks (no QK-norm: `q_norm` is None) stays absent."""
    if lm.config.moe is not None:
        raise ValueError("Mixture-of-Transformers on a mixture-of-experts model is not supported; use a dense model.")
    for block in lm.blocks:
        for path in SWITCHED:
            parent_path, _, name = path.rpartition(".")
            parent = block.get_submodule(parent_path) if parent_path else block
            module = getattr(parent, name)
            if module is not None:
                setattr(parent, name, ModalitySwitch(module, state))
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
        switched = _switched_path(key)
        copy_name, _, rest = key[len(switched) + 1 :].partition(".") if switched else ("", "", "")
        if switched and copy_name in ("text", "image"):
            (text if copy_name == "text" else image)[f"{switched}.{rest}"] = value
        else:
            text[key] = value
    return text, image


def _switched_path(key: str) -> str | None:
    """`blocks.<i>.<a SWITCHED path>` when `key` lies under one, else None."""
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "blocks":
        return None
    inside = ".".join(parts[2:]) + "."
    for path in SWITCHED:
        if inside.startswith(path + "."):
            return ".".join(parts[:2] + [path])
    return None


@torch.no_grad()
def load_image_weights(lm: Transformer, image: dict[str, Tensor]) -> None:
    """Copy image weights (keyed as in the dense LM, from `split_mot_state`) into a MoT LM's image copies.

    A folder saved before the attention projections were untied has no image copies of them; those keep
    the text weights they started from, which is exactly the model that was saved."""
    params = dict(lm.named_parameters()) | dict(lm.named_buffers())
    for key, value in image.items():
        switched = _switched_path(key)
        if switched is None:
            raise KeyError(f"{key} is not an untied MoT weight (one of {SWITCHED} inside a block).")
        params[f"{switched}.image{key[len(switched) :]}"].copy_(value)
