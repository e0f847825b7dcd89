"""The KV cache: in-place writes, row selection, and cached decoding equal to full recomputation."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.inference.kv_cache import AttentionBackend, KVCache
from minigpt.inference.one_token_attention import written_out_attention


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


def test_follow_copies_only_the_slots_where_two_histories_differ() -> None:
    cache = KVCache(n_layer=2, batch_size=2, n_kv_head=1, head_dim=1, capacity=5)
    for layer in range(2):
        cache.update(layer, torch.ones(2, 1, 3, 1), torch.ones(2, 1, 3, 1))
    cache.select(torch.tensor([0, 0, 1]))  # rows 0 and 1: copies of one row, alike in all 3 slots
    assert cache.common[0, 1] == 3 and cache.common[0, 2] == 0
    for layer in range(2):
        cache.update(layer, torch.tensor([7.0, 8.0, 9.0]).view(3, 1, 1, 1), torch.zeros(3, 1, 1, 1))
    for buffer in (*cache.k, *cache.v):  # behind the cache's back: had follow copied slots 0-2, this would vanish
        buffer[1, :, :3] = -1.0
    cache.follow([0, 0, 2])  # row 1 takes row 0's history
    assert cache.k[0][:, 0, :4, 0].tolist() == [[1, 1, 1, 7], [-1, -1, -1, 7], [1, 1, 1, 9]]
    assert cache.k[1][1, 0, 3, 0] == 7 and cache.common[0, 1] == 4
    with pytest.raises(ValueError, match="itself taken from"):
        cache.follow([1, 0, 2])  # a swap: each row would read a row being overwritten


def test_repeated_follows_keep_every_row_history_in_every_layer() -> None:
    """Beam search follows every step: each row must hold exactly the history of the row it continues."""
    torch.manual_seed(0)
    rows, layers = 4, 2
    cache = KVCache(n_layer=layers, batch_size=rows, n_kv_head=2, head_dim=2, capacity=9)
    history: list[list[list[torch.Tensor]]] = [[[] for _ in range(rows)] for _ in range(layers)]

    def write() -> None:
        for layer in range(layers):
            k = torch.randn(rows, 2, 1, 2)
            cache.update(layer, k, -k)
            for row in range(rows):
                history[layer][row].append(k[row])

    write()
    cache.select(torch.tensor([0, 0, 0, 0]))  # one prompt, four beams
    history = [[list(h[0]) for _ in range(rows)] for h in history]
    for sources in ([0, 0, 2, 2], [0, 1, 1, 3], [0, 1, 2, 0], [1, 1, 1, 3], [0, 3, 2, 3]):
        write()
        cache.follow(sources)
        history = [[list(h[s]) for s in sources] for h in history]
        for layer in range(layers):
            expected = torch.stack([torch.cat(h, dim=1) for h in history[layer]])  # (rows, 2, length, 2)
            assert torch.equal(cache.k[layer][:, :, : cache.length], expected)
            assert torch.equal(cache.v[layer][:, :, : cache.length], -expected)


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_cached_greedy_equals_uncached_recomputation(tiny_model, family: str) -> None:
    model = tiny_model(family, init_std=0.3)
    prompts = [[1, 2, 3, 4, 5], [9, 8]]
    out = generate(model, prompts, GenerationConfig(max_new_tokens=24, strategy="greedy"))
    for prompt, tokens in zip(prompts, out.token_lists()):
        assert tokens == reference_greedy(model, prompt, 24)
    assert len(set(out.token_lists()[0])) > 3  # a non-degenerate sequence, so the comparison means something


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_the_model_attends_through_the_caches_backend(tiny_model, family: str) -> None:
    """The model's one hook: whatever backend the cache holds is what every layer attends with.

    The written-out backend (the compiled step's) gives the default backend's logits step by step, and a
    backend that returns zeros reaches the logits (the model has no attention path of its own around it).
    """
    model = tiny_model(family, init_std=0.3).eval()
    ids = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])

    def decode(backend: AttentionBackend | None) -> torch.Tensor:
        cache = KVCache.for_model(model, batch_size=2, capacity=8)
        with torch.no_grad():
            model(ids[:, :3], kv_cache=cache)  # prefill with the default backend
            if backend is not None:
                cache.attention = backend
            return torch.stack([model(ids[:, t : t + 1], kv_cache=cache)[0][:, -1] for t in (3, 4)])

    default = decode(None)
    torch.testing.assert_close(decode(written_out_attention), default, atol=1e-5, rtol=1e-5)
    zeros = decode(lambda q, keys, values, mask: torch.zeros_like(q))
    assert not torch.allclose(zeros, default, atol=1e-3)
    with torch.no_grad():  # and without a cache the model computes the same as through it
        torch.testing.assert_close(model(ids[:, :5])[0][:, 3:5].transpose(0, 1), default, atol=1e-5, rtol=1e-5)
