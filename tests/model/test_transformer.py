"""The shared Transformer: both families, causality, GQA, init, weight-decay groups."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.utils.errors import ConfigError

GPT = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=50)
LLAMA = dict(GPT, n_kv_head=2, norm="rmsnorm", activation="swiglu", positions="rope", bias=False, tie_embeddings=False)


@pytest.fixture(params=["gpt", "llama"])
def model(request) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(**(GPT if request.param == "gpt" else LLAMA))).eval()


def test_forward_shapes_and_hidden(model):
    idx = torch.randint(0, 50, (3, 10))
    logits, aux = model(idx, return_hidden=True)
    assert logits.shape == (3, 10, 50)
    assert aux["hidden"].shape == (3, 10, 32)
    # The head applied to the returned hidden states gives the logits: one trunk serves every head.
    torch.testing.assert_close(model.lm_head(aux["hidden"]), logits)


def test_causal_future_tokens_do_not_change_the_past(model):
    idx = torch.randint(0, 50, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 50
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_explicit_positions_and_mask_equal_the_default_causal_path(model):
    idx = torch.randint(0, 50, (2, 9))
    positions = torch.arange(9).expand(2, 9)
    mask = torch.ones(9, 9, dtype=torch.bool).tril().view(1, 1, 9, 9)
    torch.testing.assert_close(model(idx, positions=positions, attn_mask=mask)[0], model(idx)[0])


def test_rope_model_attends_by_relative_position():
    """Shifting every position by a constant leaves a RoPE model's output unchanged (no learned table)."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**LLAMA)).eval()
    idx = torch.randint(0, 50, (1, 6))
    shifted = torch.arange(5, 11).unsqueeze(0)
    torch.testing.assert_close(model(idx)[0], model(idx, positions=shifted)[0], atol=1e-5, rtol=1e-5)


def test_grouped_query_attention_shrinks_kv_projection():
    mha = Transformer(ModelConfig(**dict(LLAMA, n_kv_head=4)))
    gqa = Transformer(ModelConfig(**dict(LLAMA, n_kv_head=1)))
    head_dim = 32 // 4
    assert mha.blocks[0].attn.qkv.out_features == (4 + 2 * 4) * head_dim
    assert gqa.blocks[0].attn.qkv.out_features == (4 + 2 * 1) * head_dim
    assert gqa(torch.randint(0, 50, (2, 5)))[0].shape == (2, 5, 50)


def test_swiglu_hidden_follows_llama_rule():
    cfg = ModelConfig(**dict(LLAMA, n_embd=128, n_head=4))
    assert cfg.mlp_hidden == 384  # 2/3 · 4 · 128 = 341.3 → next multiple of 64
    assert ModelConfig(**GPT).mlp_hidden == 4 * 32


def test_scaled_residual_init():
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=8, n_head=4, n_embd=256, block_size=16, vocab_size=50)
    model = Transformer(cfg)
    fc_std = model.blocks[0].ffn.fc.weight.std().item()
    proj_std = model.blocks[0].ffn.proj.weight.std().item()
    assert fc_std == pytest.approx(0.02, rel=0.05)
    assert proj_std == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)


def test_param_groups_decay_only_matrices_and_count_tied_weights_once():
    model = Transformer(ModelConfig(**GPT))
    decay, no_decay = model.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n_grouped = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n_grouped == model.num_params()
    assert model.lm_head.weight is model.tok_emb.weight


def test_sequence_longer_than_context_is_rejected(model):
    with pytest.raises(ValueError, match="block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_flops_per_token_matches_6n_plus_attention():
    model = Transformer(ModelConfig(**GPT))
    n = model.num_params(non_embedding=True) + model.lm_head.weight.numel()
    assert model.flops_per_token(16) == 6 * n + 12 * 2 * 32 * 16


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (dict(n_embd=30), "n_embd=30"),
        (dict(n_kv_head=3), "n_kv_head=3"),
        (dict(norm="batchnorm"), "norm='batchnorm'"),
        (dict(n_layer=0), "n_layer=0"),
        (dict(dropout=1.5), "dropout=1.5"),
    ],
)
def test_bad_model_config_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=field.replace("(", r"\(")):
        ModelConfig(**dict(GPT, **changes))


def test_config_round_trip_and_unknown_keys(tmp_path):
    cfg = ModelConfig(**LLAMA)
    cfg.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == cfg
    with pytest.raises(ConfigError, match="n_layers"):
        ModelConfig.from_dict({**cfg.to_dict(), "n_layers": 3})
