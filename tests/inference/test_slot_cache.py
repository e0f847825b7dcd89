"""`SlotCache`: prefill rows of different lengths, beside decoding rows, attend as each would alone."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.slot_cache import SlotCache
from minigpt.model.attention import causal_attention


@pytest.mark.parametrize("family", ["gpt", "llama"])  # llama: grouped-query attention (fewer key heads)
def test_prefill_rows_of_different_lengths_match_their_own_causal_attention(tiny_model, family: str) -> None:
    model = tiny_model(family)
    config = model.config
    cache = SlotCache(model, max_rows=4, capacity=16)
    heads, kv_heads, hd = config.n_head, config.n_kv_head, config.head_dim

    def packed(tokens: int, n: int) -> torch.Tensor:  # the model's packed layout: one token per row
        return torch.randn(tokens, n, 1, hd)

    for buffer in (*cache.k, *cache.v):  # a cache in use: every slot holds some earlier request's keys
        buffer.normal_(0, 100)
    # Step 1: three rows join with 5, 2 and 7 tokens.
    cache.begin_step(0, [5, 2, 7])
    q, k, v = packed(14, heads), packed(14, kv_heads), packed(14, kv_heads)
    out = cache.attend(0, q, k, v, None)
    cache.end_step()
    start = 0
    for row, n in enumerate([5, 2, 7]):
        own = [t[start : start + n].transpose(0, 2) for t in (q, k, v)]  # (1, heads, n, hd)
        expected = causal_attention(*own, None).transpose(0, 2)
        torch.testing.assert_close(out[start : start + n], expected)
        torch.testing.assert_close(cache.k[0][row, :, :n], own[1][0])  # its keys sit in slots 0 … n-1
        start += n
    assert cache.lengths[:3].tolist() == [5, 2, 7]

    # Step 2: the three rows decode one token each beside a fourth row joining with 3 tokens; row 1's slots
    # beyond its 2 filled ones hold stale keys, which it must not see.
    cache.begin_step(3, [3])
    q, k, v = packed(6, heads), packed(6, kv_heads), packed(6, kv_heads)
    out = cache.attend(0, q, k, v, None)
    cache.end_step()
    for row, n in enumerate([5, 2, 7]):
        keys = cache.k[0][row : row + 1, :, : n + 1]  # its filled slots and the new one
        values = cache.v[0][row : row + 1, :, : n + 1]
        torch.testing.assert_close(keys[0, :, n], k[row, :, 0])
        expected = causal_attention(q[row : row + 1], keys, values, torch.ones(1, 1, 1, n + 1, dtype=torch.bool))
        torch.testing.assert_close(out[row : row + 1], expected)
    own = [t[3:].transpose(0, 2) for t in (q, k, v)]
    torch.testing.assert_close(out[3:], causal_attention(*own, None).transpose(0, 2))
    assert cache.lengths.tolist() == [6, 3, 8, 3]
