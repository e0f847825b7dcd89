"""The speedrun switches of `ModelConfig` (docs/speedrun.md): each computes what its paper says."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.kv_cache import KVCache
from minigpt.model.config import ModelConfig
from minigpt.model.mlp import MLP, relu_squared
from minigpt.model.residual import is_residual_projection
from minigpt.model.transformer import SoftcappedHead, Transformer
from minigpt.utils.errors import ConfigError

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=40)


def build(seed: int = 0, **switches: object) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**{**TINY, **switches})).eval()


def test_relu2_mlp_is_squared_relu():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert relu_squared(x).tolist() == [0.0, 0.0, 0.0, 0.25, 9.0]
    mlp = build(activation="relu2").blocks[0].ffn
    assert isinstance(mlp, MLP)
    h = torch.randn(2, 3, 32)
    torch.testing.assert_close(mlp(h), mlp.proj(torch.relu(mlp.fc(h)) ** 2))


def test_softcap_bounds_logits_and_is_tanh_of_the_plain_logits():
    plain, capped = build(init_std=1.0), build(init_std=1.0, logit_softcap=5.0)
    assert isinstance(capped.lm_head, SoftcappedHead)
    idx = torch.randint(0, 40, (2, 16))
    with torch.no_grad():
        z, zc = plain(idx)[0], capped(idx)[0]
    assert z.abs().max() > 5.0  # the plain model's logits exceed the cap …
    assert zc.abs().max() < 5.0  # … the capped ones do not
    torch.testing.assert_close(zc, 5.0 * torch.tanh(z / 5.0))  # same weights (same seed), c·tanh(z/c)


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys():
    model = build(qk_norm=True, positions="rope")
    attn = model.blocks[0].attn
    x = torch.randn(1, 8, 32)
    with torch.no_grad():
        before = attn(x, model.rope(torch.arange(8)[None]), None, None)
        attn.qkv.weight[:64] *= 10.0  # queries and keys ×10 (bias 0 at init); values untouched
        after = attn(x, model.rope(torch.arange(8)[None]), None, None)
    torch.testing.assert_close(before, after, rtol=1e-4, atol=1e-5)
    without = build(positions="rope").blocks[0].attn
    with torch.no_grad():
        ref = without(x, model.rope(torch.arange(8)[None]), None, None)
        without.qkv.weight[:64] *= 10.0
        assert not torch.allclose(ref, without(x, model.rope(torch.arange(8)[None]), None, None), atol=1e-3)


def test_zero_init_projections_start_every_block_as_the_identity():
    model = build(zero_init_proj=True)
    projections = [m for m in model.modules() if is_residual_projection(m)]
    assert len(projections) == 4 and all(torch.count_nonzero(p.weight) == 0 for p in projections)
    idx = torch.randint(0, 40, (2, 8))
    hidden, _ = model.hidden_states(idx)
    embedded = model.tok_emb(idx) + model.pos_emb(torch.arange(8))
    torch.testing.assert_close(hidden, model.norm_f(embedded))
    # The projections still get a gradient: they move at the first step.
    model.train()
    model(idx)[0].square().mean().backward()
    assert all(p.weight.grad.abs().sum() > 0 for p in projections)


@pytest.mark.parametrize(
    "switches",
    [dict(qk_norm=True), dict(qk_norm=True, positions="rope", norm="rmsnorm"), dict(logit_softcap=3.0)],
    ids=["qk_norm", "qk_norm-rope", "softcap"],
)
def test_cached_decoding_equals_the_full_forward(switches):
    model = build(init_std=0.3, **switches)
    idx = torch.randint(0, 40, (2, 12))
    with torch.no_grad():
        full, _ = model(idx)
        cache = KVCache.for_model(model, batch_size=2, capacity=16)
        prefix, _ = model(idx[:, :8], kv_cache=cache)
        steps = [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(8, 12)]
    torch.testing.assert_close(torch.cat([prefix, *steps], dim=1), full, rtol=1e-4, atol=1e-5)


def test_bad_switch_values_name_the_field():
    with pytest.raises(ConfigError, match="model.logit_softcap=0"):
        ModelConfig(**TINY, logit_softcap=0)
    with pytest.raises(ConfigError, match="relu2"):
        ModelConfig(**TINY, activation="relu3")
