"""Muon with AdamW (`minigpt.optim.muon`): orthogonalised updates on the hidden matrices only, AdamW elsewhere."""

from __future__ import annotations

import copy

import pytest
import torch

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.optim import muon as muon_module
from minigpt.optim.muon import MuonAdamW, newton_schulz, newton_schulz_dtype
from minigpt.stages.schedule import lr_schedule, warmup_stable_decay_factor
from minigpt.utils.errors import ConfigError


def tiny() -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=40, tie_embeddings=False))


def train_steps(model: Transformer, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        seq = torch.randint(0, 40, (4, 17), generator=gen)
        logits, _ = model(seq[:, :-1])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), seq[:, 1:].flatten()).backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("shape", [(96, 32), (32, 128), (64, 64)])
def test_newton_schulz_maps_every_singular_value_near_one(shape):
    # A matrix with singular values spread over 1.5 decades (5.0 down to 0.16), far from orthogonal.
    gen = torch.Generator().manual_seed(0)
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=gen))
    g = u @ torch.diag(5.0 * torch.logspace(0, -1.5, k)) @ v.T
    ortho = newton_schulz(g)
    assert ortho.shape == g.shape
    s = torch.linalg.svdvals(ortho)
    # The quintic's fixed points lie in ~[0.68, 1.13] rather than at exactly 1 (Jordan et al. 2024).
    assert s.min() > 0.6 and s.max() < 1.25, s
    # Singular vectors are kept: ortho ≈ U·Vᵀ of g, up to the spread of the singular values.
    assert torch.nn.functional.cosine_similarity((u @ v.T).flatten(), ortho.flatten(), dim=0) > 0.95
    # Same iterate as PyTorch's own Muon (which runs it in bfloat16).
    from torch.optim._muon import _zeropower_via_newtonschulz

    theirs = _zeropower_via_newtonschulz(g, (3.4445, -4.7750, 2.0315), 5, 1e-7).float()
    assert (theirs - ortho).abs().max() < 0.05


def test_newton_schulz_in_bfloat16_orthogonalises_too_and_auto_picks_it_only_where_native(monkeypatch):
    # bfloat16's 8-bit mantissa still maps the singular values into the quintic's band, and the result comes
    # back in the input's dtype.
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(64, 128, generator=gen) @ torch.diag(torch.logspace(0, -1, 128))
    ortho = newton_schulz(g, dtype=torch.bfloat16)
    assert ortho.dtype == torch.float32
    s = torch.linalg.svdvals(ortho)
    assert s.min() > 0.6 and s.max() < 1.25, s
    assert (ortho - newton_schulz(g)).abs().max() < 0.05
    # "auto": bfloat16 on a CPU with AVX-512 BF16, the gradient's dtype on one without (emulated there).
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(muon_module, "_cpu_has_bf16", lambda native=native: native)
        assert newton_schulz_dtype("auto", g) == expected
    assert newton_schulz_dtype("float32", g) == torch.float32
    with pytest.raises(ValueError, match="ns_dtype='fp8'"):
        MuonAdamW(tiny().param_groups(0.0, muon=True), ns_dtype="fp8")  # type: ignore[arg-type]


def test_only_the_blocks_hidden_matrices_get_muon():
    model = tiny()
    muon, decay, no_decay = model.param_groups(0.1, muon=True)
    names = {id(p): n for n, p in model.named_parameters()}
    assert muon["muon"] and "muon" not in decay and "muon" not in no_decay
    hidden = {names[id(p)] for p in muon["params"]}
    assert hidden == {
        f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "ffn.fc", "ffn.proj")
    }
    assert {names[id(p)] for p in decay["params"]} == {"tok_emb.weight", "pos_emb.weight", "lm_head.weight"}
    assert all(p.dim() == 1 for p in no_decay["params"])  # gains and biases
    assert len(muon["params"]) + len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    # Without muon the groups are exactly the AdamW ones of before.
    assert [len(g["params"]) for g in model.param_groups(0.1)] == [len(decay["params"]) + 8, len(no_decay["params"])]


def test_a_muon_step_is_the_orthogonalised_gradient_and_adamw_groups_match_torch_adamw():
    model = tiny()
    before = copy.deepcopy(model)
    lr, muon_lr = 1e-3, 0.02
    groups = model.param_groups(0.0, muon=True)
    optimizer = MuonAdamW(groups, lr=lr, muon_lr=muon_lr, betas=(0.9, 0.99), ns_dtype="float32")
    reference = copy.deepcopy(before)
    groups = reference.param_groups(0.0, muon=True)[1:]  # the AdamW groups, same parameters
    torch_adamw = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0)
    seq = torch.randint(0, 40, (4, 17), generator=torch.Generator().manual_seed(1))
    for net in (model, reference):
        logits, _ = net(seq[:, :-1])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), seq[:, 1:].flatten()).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    optimizer.step()
    torch_adamw.step()
    for (name, new), old, ref in zip(model.named_parameters(), before.parameters(), reference.parameters()):
        step = new.detach() - old.detach()
        if name.startswith("blocks.") and new.dim() == 2:
            # First Nesterov step: M = (1−β)G, update G + β(M − G) = (1−β²)G, and NS ignores the scale:
            # ΔW = −η·√max(1, m/n)·NS(G).
            scale = muon_lr * max(1.0, new.size(0) / new.size(1)) ** 0.5
            torch.testing.assert_close(step, -scale * newton_schulz(grads[name]), rtol=0, atol=1e-6)
            # Every direction the gradient has moves by ~η: its singular values near 1, the rest ~0.
            s, g = torch.linalg.svdvals(step / scale), torch.linalg.svdvals(grads[name])
            rank = int((g > 1e-3 * g.max()).sum())
            assert s.max() < 1.25 and (s[:rank] > 0.3).all() and rank >= min(new.shape) // 2, name
        else:  # AdamW, exactly as torch's
            torch.testing.assert_close(new, ref, rtol=0, atol=1e-7, msg=name)


def test_muon_refuses_what_is_not_a_matrix():
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW([{"params": [torch.nn.Parameter(torch.zeros(4))], "muon": True}])


def test_state_dict_round_trip_continues_identically():
    model = tiny()
    optimizer = MuonAdamW(model.param_groups(0.1, muon=True), lr=1e-3, weight_decay=0.1)
    train_steps(model, optimizer, steps=2)
    twin = copy.deepcopy(model)
    twin_opt = MuonAdamW(twin.param_groups(0.1, muon=True), lr=1e-3, weight_decay=0.1)
    twin_opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    train_steps(model, optimizer, steps=2)
    train_steps(twin, twin_opt, steps=2)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_wsd_holds_the_peak_then_cools_down_linearly():
    # 10 warmup steps, 100 in all, last 40 % cooling from 1 to 0.1: step 60 starts the decay, step 80 is halfway.
    f = [warmup_stable_decay_factor(s, 10, 100, 0.4, 0.1) for s in range(101)]
    assert f[0] == pytest.approx(1 / 11) and f[10] == 1.0 and f[59] == 1.0
    assert f[60] == 1.0 and f[80] == pytest.approx(1 - 0.9 * 0.5) and f[100] == pytest.approx(0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = lr_schedule(optimizer, "wsd", 10, 100, 0.1, 0.4)
    for _ in range(80):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * f[80])
    with pytest.raises(ConfigError, match="optim.schedule='linear'"):
        lr_schedule(optimizer, "linear", 10, 100)


def test_the_stage_gives_the_muon_group_its_own_lr_and_decay():
    # Explicit in the group, so a wrapper that fills missing keys with AdamW's defaults (ZeRO-1) keeps them.
    from minigpt.stages.pretrain import PretrainStage

    optim = {"lr": 1e-3, "weight_decay": 0.1, "muon_lr": 0.05, "muon_weight_decay": 0.01}
    stage = PretrainStage(model_config=tiny().config, optim=optim)
    muon, decay, no_decay = stage.param_groups(0.1)
    assert (muon["muon"], muon["lr"], muon["weight_decay"]) == (True, 0.05, 0.01)
    assert "lr" not in decay and decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    adamw_only = PretrainStage(model_config=tiny().config, optim={"lr": 1e-3, "weight_decay": 0.1})
    groups = adamw_only.param_groups(0.1)  # optim=adamw: the two groups of before, nothing marked
    assert len(groups) == 2 and not any("muon" in g for g in groups)
