"""Causal self-attention with grouped-query heads, rotary positions and an optional KV cache."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.model.config import ModelConfig
from minigpt.model.residual import mark_residual_projection

RopeAngles = tuple[Tensor, Tensor]  # cos, sin (B, 1, T, head_dim) of each token's rotary angles


class KVCacheLike(Protocol):
    """What the model needs from a KV cache (`minigpt.inference.kv_cache` implements it).

    `length` is the number of positions already stored (the default position of the next token).
    `attend` is the one hook of decoding: it stores the new keys/values of layer `layer` at the cache's
    write position and returns the attention of `q` (B, n_head, T, hd) over every key/value the layer
    may attend to, (B, n_head, T, hd). How it attends is the cache's choice (`causal_attention` below,
    or a decoding-only variant from `minigpt.inference`), so the model itself has one attention path.
    """

    @property
    def length(self) -> int: ...

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None) -> Tensor: ...


def causal_attention(
    q: Tensor, keys: Tensor, values: Tensor, attn_mask: Tensor | None, dropout_p: float = 0.0
) -> Tensor:
    """softmax(q·kᵀ/√hd)·v through `F.scaled_dot_product_attention`, causal unless `attn_mask` says otherwise.

    Args:
        q: queries (B, n_head, T, hd) of the T newest tokens.
        keys, values: (B, n_kv_head, S, hd), S ≥ T: the last T are the new tokens' own, any before them
            come from a cache. n_kv_head < n_head shares each key/value head among n_head / n_kv_head
            query heads (grouped-query attention).
        attn_mask: boolean (B|1, 1, T, S), True = may attend, or None for causal.
        dropout_p: attention dropout (training only).

    Returns:
        (B, n_head, T, hd).
    """
    T, S = q.shape[2], keys.shape[2]
    is_causal = False
    if attn_mask is None:
        if S == T:
            is_causal = True
        elif T > 1:  # new tokens appended after S - T cached ones: causal with an offset
            attn_mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
    return F.scaled_dot_product_attention(
        q,
        keys,
        values,
        attn_mask=attn_mask,
        dropout_p=dropout_p,
        is_causal=is_causal,
        enable_gqa=keys.shape[1] != q.shape[1],
    )


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, "RoFormer", eq. 34), in the "rotate half" layout.

    Each pair of channels (i, i + d/2) of a query or key at position p is rotated by the angle
    p · θ^(-2i/d). The dot product of a rotated query and key then depends only on their *relative*
    position. The half-split pairing (rather than adjacent pairs) is the layout Llama checkpoints use.

    `forward(positions)` looks the angles up once per model call; every layer then applies them with
    `rotate` (looking them up per layer costs 4·n_layer gathers per decoding step, a large share of a
    small model's step).
    """

    cos: Tensor  # (max_positions, hs), buffers registered in __init__
    sin: Tensor

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)  # (T, hs/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, hs)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: Tensor) -> RopeAngles:
        """cos and sin of the angles of `positions` (B, T), each shaped (B, 1, T, hs) to broadcast over heads."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)

    @staticmethod
    def rotate(x: Tensor, angles: RopeAngles) -> Tensor:
        """Rotate `x` (B, heads, T, hs) by `angles` from `forward`."""
        cos, sin = (a.to(x.dtype) for a in angles)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query) causal attention through `F.scaled_dot_product_attention`.

    Queries, keys and values come from one fused projection; with `n_kv_head < n_head`, each key/value
    head is shared by a group of `n_head // n_kv_head` query heads (GQA), which shrinks the KV cache by
    that factor at generation time. Without a cache the layer attends through `causal_attention`; with
    one, the cache stores the new keys/values and attends (`KVCacheLike.attend`), with whichever variant
    the decoder chose for it (`minigpt.inference`).
    """

    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        qkv_out = (config.n_head + 2 * config.n_kv_head) * config.head_dim
        self.qkv = nn.Linear(config.n_embd, qkv_out, bias=config.bias)
        # Input n_head · head_dim: n_embd, unless heads were pruned away (`ModelConfig.attn_head_dim`).
        self.proj = mark_residual_projection(
            nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=config.bias)
        )
        self.dropout = config.dropout
        # QK-norm (Henry et al. 2020; Dehghani et al. 2023 §3.1; Qwen3's per-head form): RMS-normalise each
        # head's query and key, with a learned gain, before q·kᵀ. The attention logits then cannot grow with
        # the weights' scale, which keeps softmax out of saturation and allows larger learning rates.
        self.q_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps) if config.qk_norm else None

    def forward(
        self,
        x: Tensor,
        rope: RopeAngles | None,
        attn_mask: Tensor | None,
        kv_cache: KVCacheLike | None,
    ) -> Tensor:
        """Attend causally; `attn_mask` (B|1, 1, T, S), True = may attend, overrides the causal default.

        `rope` holds the rotary angles of the tokens (None for models with learned positions).
        """
        B, T, _ = x.shape
        # One (B, heads, T, hs) view of all query, key and value heads side by side: queries and keys
        # then rotate in one call, and splitting heads is a view, not a copy.
        heads = self.qkv(x).view(B, T, self.n_head + 2 * self.n_kv_head, self.head_dim).transpose(1, 2)
        if rope is not None and self.q_norm is None:
            qk, v = heads.split([self.n_head + self.n_kv_head, self.n_kv_head], dim=1)
            q, k = RotaryEmbedding.rotate(qk, rope).split([self.n_head, self.n_kv_head], dim=1)
        else:
            q, k, v = heads.split([self.n_head, self.n_kv_head, self.n_kv_head], dim=1)
            if self.q_norm is not None and self.k_norm is not None:  # normalise first, then rotate
                q, k = self.q_norm(q), self.k_norm(k)
                if rope is not None:
                    q, k = RotaryEmbedding.rotate(q, rope), RotaryEmbedding.rotate(k, rope)
        # q (B, nh, T, hs); k, v (B, nkv, T, hs)
        if kv_cache is None:
            y = causal_attention(q, k, v, attn_mask, self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        else:  # decoding: the cache appends k, v to the stored ones and attends over all of them
            y = kv_cache.attend(self.layer_idx, q, k, v, attn_mask)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # heads side by side: (B, T, nh·hs)
        return self.proj(y)
