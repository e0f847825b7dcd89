"""The memory planner: ZeRO's Figure 1 numbers, the bytes a real step allocates on this CPU, the command."""

from __future__ import annotations

import pytest
import torch

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.scale.memory import AUTOCAST_BYTES, STRATEGIES, model_states, plan
from minigpt.scale.plan import main, model_shape, parse_bytes
from minigpt.utils.errors import ConfigError


def test_model_states_reproduce_figure_1_of_the_zero_paper():
    # Rajbhandari et al. 2020, Figure 1: Ψ = 7.5B, K = 12, N_d = 64 → 120, 31.4, 16.6 and 1.9 GB.
    gb = [sum(model_states(7_500_000_000, (2, 2, 12), s, 64)) / 1e9 for s in ("", "os", "os+g", "os+g+p")]
    assert [round(x, 1) for x in gb] == [120.0, 31.4, 16.6, 1.9]


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_plan_matches_the_bytes_one_adamw_step_allocates():
    config = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=100)
    model = Transformer(config)
    optimizer = torch.optim.AdamW(model.parameters())
    logits, _ = model(torch.randint(0, 100, (2, 32)))
    logits.square().mean().backward()
    optimizer.step()
    measured = (
        tensor_bytes(model.parameters()),
        tensor_bytes(p.grad for p in model.parameters()),
        tensor_bytes(v for state in optimizer.state.values() for v in state.values() if v.dim() > 0),
    )
    ddp = plan(model_shape(config), STRATEGIES[0], 1, "fp32", micro_batch=2, seq_len=32)
    for want, got in zip(measured, (ddp.params, ddp.grads, ddp.optimizer)):
        assert got == pytest.approx(want, rel=0.05)


def test_sharding_leaves_a_gpus_share_and_recomputation_shrinks_activations():
    shape = model_shape(ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=100))
    by_name = {s.name: s for s in STRATEGIES}
    ddp, zero3 = (plan(shape, by_name[n], 8, "bf16_mixed", 4, 64) for n in ("ddp", "fsdp zero=3"))
    assert zero3.params + zero3.grads + zero3.optimizer == pytest.approx((ddp.params + ddp.grads + ddp.optimizer) / 8)
    kept = [plan(shape, by_name["ddp"], 8, "bf16_mixed", 4, 64, recompute=r).activations for r in (False, "mlp", True)]
    assert kept[0] > kept[1] > kept[2]
    assert AUTOCAST_BYTES["bf16_mixed"] == (4, 4, 8)  # autocast keeps fp32 weights: 16Ψ like the paper, split 4+4+8


def test_plan_command_prints_every_strategy_and_refuses_a_bad_size(compose_command, capsys):
    plans = main(compose_command("plan", "model=gpt_nano", "gpus=2", "gpu_memory=1GB", "vocab_size=65"))
    out = capsys.readouterr().out
    assert [p.strategy for p in plans] == [s.name for s in STRATEGIES if s.name != "expert_parallel"]  # dense
    assert all(p.strategy in out for p in plans) and "yes" in out
    assert parse_bytes("24GiB") == 24 * 2**30 and parse_bytes("8e10") == 8e10
    with pytest.raises(ConfigError, match="gpu_memory=lots"):
        parse_bytes("lots", "gpu_memory")


def test_model_parallel_rows_split_their_part_of_the_model():
    dense = model_shape(ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=100))
    moe = model_shape(
        ModelConfig.from_dict(
            dict(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=100, moe=dict(num_experts=4, top_k=2))
        )
    )
    by_name = {s.name: s for s in STRATEGIES}
    tp, ep = by_name["tensor_parallel"], by_name["expert_parallel"]
    assert tp.applies(dense) and not ep.applies(dense) and ep.applies(moe) and not tp.applies(moe)
    # Ψ/GPU = Ψ − Ψ_split + Ψ_split/N, the same for weights, gradients and both Adam moments (fp32: 4, 4, 8 bytes).
    for shape, strategy, split in ((dense, tp, dense.tensor_parallel_params), (moe, ep, moe.expert_params)):
        assert 0 < split < shape.params
        planned = plan(shape, strategy, 4, "fp32", 2, 32)
        psi = shape.params - split + split / 4
        assert (planned.params, planned.grads, planned.optimizer) == pytest.approx((4 * psi, 4 * psi, 8 * psi))
    # Tensor parallelism divides 24 of a block's 34·s·b·h activations and the logits (Korthikanti eq. 3).
    ddp = plan(dense, by_name["ddp"], 4, "bf16_mixed", 2, 32)
    split = plan(dense, tp, 4, "bf16_mixed", 2, 32)
    sbh, logits = 32 * 2 * 64, 2 * 4 * 32 * 2 * 100
    assert ddp.activations - split.activations == pytest.approx(2 * (24 * sbh * 0.75) + logits * 0.75)
