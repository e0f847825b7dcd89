"""Attention of one new token per row, written out as element-wise products and sums.

A decoding step has one query per row and head. The CPU attention kernel behind
`F.scaled_dot_product_attention` then pays a setup per (row, head) — buffers, two small matrix
products through BLAS — that outweighs the arithmetic: scores over S keys of width hd are S·hd
multiply-adds per query. Written out here as plain tensor arithmetic, inside a compiled decoding step
inductor fuses the whole of it (scores, log-sum-exp, weighted sum) into one loop nest with the cache
write (`minigpt.inference.compiled`, whose cache attends through `written_out_attention`); eagerly it
would be five separate ops, so eager steps keep the kernel (`minigpt.model.attention.causal_attention`).
It also returns the log-sum-exp, which `shared_prefix_attention` needs to merge two parts.
"""

from __future__ import annotations

import torch
from torch import Tensor


def one_token_attention(
    q: Tensor, keys: Tensor, values: Tensor, key_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """softmax(q·kᵀ/√hd)·v for a few queries per key head, and the log-sum-exp of the scores.

    Args:
        q: queries (B, n_kv_head, rep, hd): the `rep` query heads that share a key/value head (GQA),
            or several rows' queries, side by side.
        keys, values: (B, n_kv_head, S, hd).
        key_mask: boolean, broadcastable to (B, n_kv_head, rep, S), True = may attend (e.g. (B, 1, 1, S)),
            or None. Every query must be allowed at least one key.

    Returns:
        out (B, n_kv_head, rep, hd) and lse (B, n_kv_head, rep).
    """
    scores = (q.unsqueeze(3) * keys.unsqueeze(2)).sum(-1) * q.shape[-1] ** -0.5  # (B, n_kv, rep, S)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = ((scores - lse.unsqueeze(-1)).exp().unsqueeze(-1) * values.unsqueeze(2)).sum(-2)
    return out, lse


def written_out_attention(q: Tensor, keys: Tensor, values: Tensor, key_mask: Tensor | None) -> Tensor:
    """An attention backend of a KV cache (`AttentionBackend`) for one-token steps, via `one_token_attention`.

    Args:
        q: the new token's queries (B, n_head, 1, hd).
        keys, values: every filled slot, (B, n_kv_head, S, hd).
        key_mask: (B|1, 1, 1, S) boolean, True = may attend, or None (the one new token may attend
            every filled slot).

    Returns:
        (B, n_head, 1, hd), as `causal_attention` would give it.
    """
    rows, n_head, _, hd = q.shape
    # The query heads that share a key/value head (GQA) become that head's queries: (B, n_kv, rep, hd).
    out, _ = one_token_attention(q.reshape(rows, keys.shape[1], -1, hd), keys, values, key_mask)
    return out.reshape(rows, n_head, 1, hd)
