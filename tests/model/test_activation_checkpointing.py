"""Activation checkpointing (whole blocks, attention only, MLP only): same gradients, fewer saved activations."""

from __future__ import annotations

import pytest
import torch

from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.utils.errors import ConfigError

BASE = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=50, dropout=0.1)
FAMILIES = {
    "gpt": BASE,
    "llama": dict(BASE, n_kv_head=2, norm="rmsnorm", activation="swiglu", positions="rope", bias=False),
    "moe": dict(BASE, moe=dict(num_experts=4, top_k=2)),  # the MLP sublayer returns (out, aux)
}
MODES = [True, "attention", "mlp"]


def _grads_and_saved(fields: dict, mode: bool | str) -> tuple[dict[str, torch.Tensor], int]:
    """Gradients of one training step and the elements autograd kept for backward outside checkpoints."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**dict(fields, activation_checkpointing=mode))).train()
    idx = torch.randint(0, 50, (2, 12))
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel()
        return tensor

    torch.manual_seed(1)  # the same dropout masks for every mode
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, aux = model(idx)
        loss = logits.square().mean() + sum(aux.get("aux_loss", []))
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}, saved


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MODES)
def test_recomputation_gives_identical_gradients_and_keeps_fewer_activations(family, mode):
    plain, plain_saved = _grads_and_saved(FAMILIES[family], False)
    recomputed, saved = _grads_and_saved(FAMILIES[family], mode)
    assert plain.keys() == recomputed.keys()
    for name, grad in plain.items():  # dropout included: the recomputation replays the same masks
        torch.testing.assert_close(recomputed[name], grad, rtol=0, atol=0, msg=name)
    assert saved < plain_saved  # it did recompute: what the checkpointed part saved was dropped


def test_whole_blocks_keep_less_than_one_sublayer():
    saved = {mode: _grads_and_saved(FAMILIES["gpt"], mode)[1] for mode in MODES}
    assert saved[True] < min(saved["attention"], saved["mlp"])


def test_old_gradient_checkpointing_key_loads_and_bad_modes_are_refused():
    legacy = {k: v for k, v in BASE.items()} | {"gradient_checkpointing": True}  # a pre-rename config.json
    assert ModelConfig.from_dict(legacy).activation_checkpointing is True
    with pytest.raises(ConfigError, match="activation_checkpointing='block'.*attention, mlp"):
        ModelConfig(**dict(BASE, activation_checkpointing="block"))


def test_the_old_command_line_key_names_the_new_one():
    from minigpt.cli.command import check_renamed_keys

    with pytest.raises(ConfigError, match="model.gradient_checkpointing is now model.activation_checkpointing; "):
        check_renamed_keys(["model=gpt_small", "model.gradient_checkpointing=true"])
    check_renamed_keys(["model.activation_checkpointing=mlp"])  # the new name passes
