"""The MoE layer: routing invariants, vectorised dispatch against a per-token loop, upcycling, pruning."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from minigpt.model.config import ModelConfig, MoEConfig
from minigpt.model.moe import MoELayer, moe_metrics, route_expert_choice, route_top_k
from minigpt.model.moe_surgery import expert_load, prune_experts, upcycle
from minigpt.model.transformer import Transformer
from minigpt.utils.errors import ConfigError


def tiny_config(**moe) -> ModelConfig:
    """2 layers × 32 wide, 8 experts of width 16 unless overridden."""
    moe = {"num_experts": 8, "top_k": 2, "expert_hidden": 16, **moe}
    return ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=40, moe=moe)


def token_gates(slot_token, slot_gate, n_tokens):
    """(N, E) matrix: gate of token n at expert e (0 where not routed)."""
    gates = torch.zeros(n_tokens + 1, slot_token.shape[0])
    experts = torch.arange(slot_token.shape[0]).unsqueeze(1).expand_as(slot_token)
    gates[slot_token.flatten(), experts.flatten()] = slot_gate.flatten()
    return gates[:n_tokens]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_top_k_sends_each_token_to_exactly_k_experts_with_gates_summing_to_one(k):
    probs = torch.randn(50, 8, generator=torch.Generator().manual_seed(k)).softmax(-1)
    routing = route_top_k(probs, k, renormalize=True, capacity_factor=None)
    gates = token_gates(routing.slot_token, routing.slot_gate, 50)
    assert ((gates > 0).sum(dim=1) == k).all()
    assert torch.allclose(gates.sum(dim=1), torch.ones(50))
    assert torch.equal(gates > 0, torch.zeros_like(probs, dtype=torch.bool).scatter(1, probs.topk(k).indices, True))
    assert routing.dropped.item() == 0.0


def test_top_k_without_renormalisation_keeps_the_softmax_values():
    probs = torch.randn(20, 8, generator=torch.Generator().manual_seed(0)).softmax(-1)
    routing = route_top_k(probs, 2, renormalize=False, capacity_factor=None)
    gates = token_gates(routing.slot_token, routing.slot_gate, 20)
    assert torch.allclose(gates.sum(dim=1), probs.topk(2).values.sum(dim=1))


def test_switch_with_capacity_factor_one_drops_exactly_the_overflowing_tokens():
    # 8 tokens, 4 experts, top-1, c = 1: capacity 2. Tokens 0-5 want expert 0, tokens 6-7 want expert 1.
    config = tiny_config(num_experts=4, top_k=1, router="switch", capacity_factor=1.0, renormalize=False)
    layer = MoELayer(config, 0)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[0, 0] = layer.router.weight[1, 1] = 5.0
    x = torch.zeros(1, 8, 32)
    x[0, :6, 0] = 1.0
    x[0, 6:, 1] = 1.0
    x[0, :, 2:] = torch.randn(8, 30)  # the features the router ignores
    out, aux = layer(x)
    kept = out[0].abs().sum(dim=1) > 0
    assert kept.tolist() == [True, True, False, False, False, False, True, True]  # earlier tokens win
    assert aux["moe"]["dropped"].item() == pytest.approx(0.5)


def test_over_capacity_first_choices_win_over_second_choices():
    # Tokens 0, 1 rank experts (1, 0, 2); tokens 2, 3 rank (0, 1, 2). Capacity ⌈0.75 · 4 · 2 / 3⌉ = 2.
    probs = torch.tensor([[0.3, 0.6, 0.1], [0.3, 0.6, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    routing = route_top_k(probs, 2, renormalize=True, capacity_factor=0.75)
    assert sorted(routing.slot_token[0].tolist()) == [2, 3]  # expert 0 is their first choice
    assert sorted(routing.slot_token[1].tolist()) == [0, 1]
    assert routing.dropped.item() == pytest.approx(0.5)


def test_expert_choice_gives_each_expert_exactly_its_capacity():
    probs = torch.randn(10, 4, generator=torch.Generator().manual_seed(1)).softmax(-1)
    routing = route_expert_choice(probs, capacity_factor=2.0)  # ⌈2 · 10 / 4⌉ = 5 tokens each
    assert routing.slot_token.shape == (4, 5)
    for e in range(4):
        assert len(set(routing.slot_token[e].tolist())) == 5  # five distinct real tokens
        assert set(routing.slot_token[e].tolist()) == set(probs[:, e].topk(5).indices.tolist())
    assert torch.equal(routing.slot_gate, probs.gather(0, routing.slot_token.t()).t())


def naive_moe(layer: MoELayer, x: torch.Tensor) -> torch.Tensor:
    """Per-token reference: route and run each expert on each token one at a time."""
    moe, experts = layer.moe, layer.experts
    flat = x.reshape(-1, x.shape[-1])
    probs = layer.router(flat).float().softmax(-1)
    hidden = experts.hidden
    b_in = experts.b_in.view(moe.num_experts, -1) if experts.b_in is not None else None
    b_out = experts.b_out.view(moe.num_experts, -1) if experts.b_out is not None else None

    def expert(e, v):
        h = v @ experts.w_in[e] + (b_in[e] if b_in is not None else 0)
        h = F.silu(h[:hidden]) * h[hidden:] if experts.swiglu else experts.act(h)
        return h @ experts.w_out[e] + (b_out[e] if b_out is not None else 0)

    out = torch.zeros_like(flat)
    if moe.router == "expert_choice":
        capacity = -(-int(moe.capacity_factor * len(flat)) // moe.num_experts)
        for e in range(moe.num_experts):
            for n in probs[:, e].topk(capacity).indices.tolist():
                out[n] += probs[n, e] * expert(e, flat[n])
        return out.view_as(x)
    for n in range(len(flat)):
        weights, chosen = probs[n].topk(moe.top_k)
        if moe.renormalize:
            weights = weights / weights.sum()
        for w, e in zip(weights.tolist(), chosen.tolist()):
            out[n] += w * expert(e, flat[n])
    return out.view_as(x)


@pytest.mark.parametrize(
    "moe, trunk",
    [
        ({"top_k": 2}, {}),
        ({"top_k": 1, "renormalize": False}, {}),
        ({"top_k": 4, "renormalize": False}, {"activation": "swiglu", "bias": False}),
        ({"router": "expert_choice", "capacity_factor": 2.0}, {}),
    ],
)
def test_vectorised_layer_equals_per_token_reference(moe, trunk):
    torch.manual_seed(0)
    config = dataclasses.replace(tiny_config(**moe), **trunk)
    layer = MoELayer(config, 0)
    with torch.no_grad():  # non-zero biases, so that a misplaced bias shows
        for p in (layer.experts.b_in, layer.experts.b_out):
            if p is not None:
                p.normal_()
    x = torch.randn(3, 8, 32)
    out, _ = layer(x)
    assert torch.allclose(out, naive_moe(layer, x), atol=1e-5)


def test_router_learns_from_the_lm_loss_through_the_gates():
    layer = MoELayer(tiny_config(aux_loss_coef=0.0, z_loss_coef=0.0), 0)
    out, aux = layer(torch.randn(2, 8, 32))
    (out.square().sum() + aux["aux_loss"]).backward()
    assert layer.router.weight.grad.abs().sum() > 0


def test_shared_experts_and_every_n_layers():
    model = Transformer(tiny_config(num_shared_experts=1, every_n_layers=2))
    assert not isinstance(model.blocks[0].ffn, MoELayer) and isinstance(model.blocks[1].ffn, MoELayer)
    _, aux = model(torch.randint(0, 40, (2, 16)))
    assert len(aux["aux_loss"]) == 1 and aux["moe"][0]["layer"] == 1
    metrics = moe_metrics(aux)
    assert metrics["train/moe/layer1/load/expert7"] >= 0
    assert sum(metrics[f"train/moe/layer1/load/expert{e}"] for e in range(8)) == pytest.approx(1.0)
    assert metrics["train/moe/layer1/entropy"] <= torch.log(torch.tensor(8.0)).item() + 1e-6


def test_config_round_trips_and_rejects_bad_settings():
    config = tiny_config(router="switch", top_k=1, capacity_factor=1.25, renormalize=False)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert isinstance(ModelConfig.from_dict(config.to_dict()).moe, MoEConfig)
    for bad in (
        {"router": "switch", "capacity_factor": 1.0},  # top_k=2
        {"router": "expert_choice"},  # no capacity
        {"top_k": 1},  # renormalised top-1
        {"top_k": 9},
        {"every_n_layers": 3},
        {"expert_count": 4},
    ):
        with pytest.raises(ConfigError):
            tiny_config(**bad)


@pytest.mark.parametrize("trunk", [{}, {"activation": "swiglu", "bias": False, "norm": "rmsnorm"}])
def test_upcycled_model_computes_its_dense_parent(trunk):
    torch.manual_seed(0)
    dense = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=40, **trunk))
    with torch.no_grad():
        for block in dense.blocks:  # biases away from their zero init
            for p in block.ffn.parameters():
                p.add_(0.05 * torch.randn_like(p))
    moe = upcycle(dense, MoEConfig(num_experts=4, top_k=2, expert_hidden=8))
    assert moe.blocks[0].ffn.experts.hidden == dense.config.mlp_hidden
    idx = torch.randint(0, 40, (2, 16))
    assert torch.allclose(moe(idx)[0], dense(idx)[0], atol=1e-5)
    with pytest.raises(ConfigError):
        upcycle(moe, MoEConfig())


def test_pruning_unused_experts_keeps_the_logits():
    torch.manual_seed(0)
    model = Transformer(tiny_config())
    idx = torch.randint(0, 40, (1, 3))  # 3 tokens · top-2: at most 6 of the 8 experts are used per layer
    load = expert_load(model, [idx])
    keep = int((load > 0).sum(dim=1).max())
    assert keep < 8
    pruned = prune_experts(model, load, keep)
    assert pruned.config.moe.num_experts == keep
    assert torch.allclose(pruned(idx)[0], model(idx)[0], atol=1e-5)
    with pytest.raises(ConfigError):
        prune_experts(model, load, 1)


def test_flops_per_token_count_only_the_active_experts():
    """moe_8x top-2 has the dense twin's active parameters, so (almost) the same FLOPs per token."""
    from minigpt.model.config import ModelConfig
    from minigpt.model.transformer import Transformer

    # No biases: with top-2, two experts each add their own output bias, which a dense MLP adds once.
    base = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50, bias=False)
    dense = Transformer(ModelConfig(**base))
    moe = Transformer(ModelConfig(**base, moe=dict(num_experts=8, top_k=2, expert_hidden=64)))
    router = sum(m.router.weight.numel() for m in moe.modules() if hasattr(m, "router"))
    assert moe.num_params() > 2 * dense.num_params()
    assert moe.flops_per_token(16) == dense.flops_per_token(16) + 6 * router
