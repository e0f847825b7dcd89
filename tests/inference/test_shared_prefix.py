"""Shared-prefix decoding attention equals plain attention over every slot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minigpt.inference.shared_prefix import shared_prefix_attention, with_shared_prefix
from minigpt.model.attention import causal_attention


@pytest.mark.parametrize(("n_head", "n_kv_head"), [(4, 4), (4, 2)])
@pytest.mark.parametrize("padded", [False, True])
def test_equals_attention_over_every_slot(n_head: int, n_kv_head: int, padded: bool) -> None:
    torch.manual_seed(0)
    groups, group, slots, shared, hd = 3, 4, 11, 7, 8
    rows = groups * group
    q = torch.randn(rows, n_head, 1, hd)
    keys, values = torch.randn(rows, n_kv_head, slots, hd), torch.randn(rows, n_kv_head, slots, hd)
    for tensor in (keys, values):  # the rows of a group hold the same first `shared` slots
        tensor.view(groups, group, n_kv_head, slots, hd)[:, 1:, :, :shared] = tensor.view(
            groups, group, n_kv_head, slots, hd
        )[:, :1, :, :shared]
    mask = None
    if padded:  # left padding: each group's prompt starts later, the same for its rows
        mask = torch.ones(rows, 1, 1, slots, dtype=torch.bool)
        for g, pad in enumerate([0, 2, 5]):
            mask[g * group : (g + 1) * group, ..., :pad] = False
    expected = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=n_head != n_kv_head)
    got = shared_prefix_attention(q, keys, values, mask, group, shared)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_reads_the_shared_slots_of_each_groups_first_row_only() -> None:
    """The other rows' copies are never read: garbage there changes nothing."""
    torch.manual_seed(1)
    q = torch.randn(4, 2, 1, 4)
    keys, values = torch.randn(4, 2, 6, 4), torch.randn(4, 2, 6, 4)
    keys[1, :, :3], values[1, :, :3] = keys[0, :, :3], values[0, :, :3]
    keys[3, :, :3], values[3, :, :3] = keys[2, :, :3], values[2, :, :3]
    expected = F.scaled_dot_product_attention(q, keys, values)
    keys[1, :, :3], values[3, :, :3] = float("nan"), float("nan")
    torch.testing.assert_close(shared_prefix_attention(q, keys, values, None, 2, 3), expected)


def test_with_shared_prefix_picks_the_backend_the_decoder_asks_for() -> None:
    """No prefix: the fallback itself; a prefix (group, shared): shared-prefix attention over it."""
    torch.manual_seed(2)
    q = torch.randn(4, 2, 1, 4)
    keys, values = torch.randn(4, 2, 6, 4), torch.randn(4, 2, 6, 4)
    keys[1, :, :3], values[1, :, :3] = keys[0, :, :3], values[0, :, :3]
    keys[3, :, :3], values[3, :, :3] = keys[2, :, :3], values[2, :, :3]
    assert with_shared_prefix(None, causal_attention) is causal_attention
    backend = with_shared_prefix((2, 3), causal_attention)
    keys[1, :, :3] = float("nan")  # read only through the group's first row
    torch.testing.assert_close(backend(q, keys, values, None), shared_prefix_attention(q, keys, values, None, 2, 3))
    assert not backend(q, keys, values, None).isnan().any()
