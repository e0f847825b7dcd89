"""The written-out attention of one token per row equals the attention kernel, and returns its log-sum-exp."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minigpt.inference.one_token_attention import one_token_attention, written_out_attention
from minigpt.model.attention import causal_attention


@pytest.mark.parametrize(("n_head", "n_kv_head"), [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("padded", [False, True])
def test_equals_the_attention_kernel(n_head: int, n_kv_head: int, padded: bool) -> None:
    torch.manual_seed(0)
    rows, slots, hd = 3, 9, 8
    q = torch.randn(rows, n_head, 1, hd)
    keys, values = torch.randn(rows, n_kv_head, slots, hd), torch.randn(rows, n_kv_head, slots, hd)
    mask = None
    if padded:  # left padding of 0, 3 and 8 slots: the last row may attend one key only
        mask = torch.ones(rows, 1, 1, slots, dtype=torch.bool)
        for row, pad in enumerate([0, 3, 8]):
            mask[row, ..., :pad] = False
    expected = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=n_head != n_kv_head)

    out, lse = one_token_attention(q.view(rows, n_kv_head, n_head // n_kv_head, hd), keys, values, mask)

    torch.testing.assert_close(out.reshape(rows, n_head, 1, hd), expected, atol=1e-6, rtol=1e-5)
    # lse = log Σ_s exp(q·k_s / √hd) over the allowed slots, per query head.
    kv_of_head = torch.arange(n_head) // (n_head // n_kv_head)
    scores = (q[:, :, 0, None, :] * keys[:, kv_of_head]).sum(-1) / hd**0.5  # (rows, n_head, slots)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, 0], float("-inf"))
    torch.testing.assert_close(lse.reshape(rows, n_head), scores.logsumexp(-1))
    if padded:  # one allowed key: the output is that key's value
        torch.testing.assert_close(out[2].reshape(n_head, hd), values[2, kv_of_head, 8])


@pytest.mark.parametrize(("n_head", "n_kv_head"), [(4, 4), (6, 2)])
def test_written_out_backend_equals_the_models_attention(n_head: int, n_kv_head: int) -> None:
    """The compiled step's cache backend computes what the model's own `causal_attention` does."""
    torch.manual_seed(2)
    rows, slots, hd = 3, 7, 8
    q = torch.randn(rows, n_head, 1, hd)
    keys, values = torch.randn(rows, n_kv_head, slots, hd), torch.randn(rows, n_kv_head, slots, hd)
    mask = torch.ones(rows, 1, 1, slots, dtype=torch.bool)
    mask[1, ..., :4] = False  # a left-padded row
    for key_mask in (None, mask):
        expected = causal_attention(q, keys, values, key_mask)
        torch.testing.assert_close(written_out_attention(q, keys, values, key_mask), expected, atol=1e-6, rtol=1e-5)
