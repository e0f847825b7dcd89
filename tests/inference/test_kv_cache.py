"""The KV cache: in-place writes, row selection, and cached decoding equal to full recomputation."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.inference.kv_cache import KVCache


def reference_greedy(model: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding without a cache: the whole sequence is recomputed for every new token."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([seq]))
            seq.append(int(logits[0, -1].argmax()))
    return seq[len(prompt) :]


def test_update_writes_in_place_and_advances_after_the_last_layer() -> None:
    cache = KVCache(n_layer=2, batch_size=1, n_kv_head=2, head_dim=4, capacity=5)
    buffer = cache.k[0].data_ptr()
    k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    k_all, _ = cache.update(0, k, v)
    assert cache.length == 0 and torch.equal(k_all, k)  # layer 0 of the same forward: no advance yet
    cache.update(1, k, v)
    assert cache.length == 3
    k2 = torch.randn(1, 2, 1, 4)
    k_all, v_all = cache.update(0, k2, k2)
    assert torch.equal(k_all, torch.cat([k, k2], dim=2)) and v_all.shape == (1, 2, 4, 4)
    assert cache.k[0].data_ptr() == buffer
    cache.update(1, k2, k2)
    with pytest.raises(ValueError, match="overflow"):
        cache.update(0, k, v)


def test_select_reorders_and_repeats_rows() -> None:
    cache = KVCache(n_layer=1, batch_size=2, n_kv_head=1, head_dim=1, capacity=3)
    cache.update(0, torch.tensor([[[[1.0]]], [[[2.0]]]]), torch.zeros(2, 1, 1, 1))
    cache.select(torch.tensor([1, 0]))
    assert cache.k[0][:, 0, 0, 0].tolist() == [2.0, 1.0]
    cache.select(torch.tensor([0, 0, 1]))
    assert cache.batch_size == 3 and cache.k[0][:, 0, 0, 0].tolist() == [2.0, 2.0, 1.0] and cache.length == 1


def test_repeated_selects_follow_the_rows_in_every_layer() -> None:
    """Beam search selects every step: the swapped-in spare buffers must always hold the chosen rows."""
    cache = KVCache(n_layer=2, batch_size=3, n_kv_head=2, head_dim=2, capacity=4)
    keys = [torch.randn(3, 2, 2, 2) for _ in range(2)]
    values = [torch.randn(3, 2, 2, 2) for _ in range(2)]
    for layer in range(2):
        cache.update(layer, keys[layer], values[layer])
    order = torch.arange(3)
    for rows in ([2, 0, 0], [1, 2, 0], [0, 0, 2], [2, 1, 0]):
        rows = torch.tensor(rows)
        cache.select(rows)
        order = order[rows]  # which original row each slot now holds
        for layer in range(2):
            assert torch.equal(cache.k[layer][:, :, :2], keys[layer][order])
            assert torch.equal(cache.v[layer][:, :, :2], values[layer][order])
    new = torch.randn(3, 2, 1, 2)
    for layer in range(2):
        k_all, v_all = cache.update(layer, new, -new)
        assert torch.equal(k_all, torch.cat([keys[layer][order], new], dim=2))
        assert torch.equal(v_all, torch.cat([values[layer][order], -new], dim=2))


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_cached_greedy_equals_uncached_recomputation(tiny_model, family: str) -> None:
    model = tiny_model(family, init_std=0.3)
    prompts = [[1, 2, 3, 4, 5], [9, 8]]
    out = generate(model, prompts, GenerationConfig(max_new_tokens=24, strategy="greedy"))
    for prompt, tokens in zip(prompts, out.token_lists()):
        assert tokens == reference_greedy(model, prompt, 24)
    assert len(set(out.token_lists()[0])) > 3  # a non-degenerate sequence, so the comparison means something
