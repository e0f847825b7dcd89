"""LoRA through peft: merge equals the adapters, adapters round-trip, only adapters and new rows train."""

import torch

from minigpt.model.config import ModelConfig
from minigpt.model.lora import (
    apply_lora,
    load_adapter,
    lora_config,
    lora_param_groups,
    merge_lora,
    save_adapter,
    trainable_parameters,
)
from minigpt.model.transformer import Transformer


def _base() -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=20))


def _trained_lora(model: Transformer, train_rows_from: int = 20, bias: str = "none") -> Transformer:
    """LoRA on a model whose vocabulary grew from 20 to 24, after a few optimizer steps."""
    model.resize_vocab(24)
    apply_lora(model, lora_config(4, 8, 0.0, ["qkv", "proj", "fc"], bias), train_rows_from=train_rows_from)
    optimizer = torch.optim.AdamW(lora_param_groups(model, 0.1), lr=1e-2)
    for _ in range(3):
        logits, _ = model(torch.randint(0, 24, (4, 12)))
        logits.logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def test_merged_model_gives_the_adapted_logits():
    base = _base()
    original = base.tok_emb.weight[:20].detach().clone()
    model = _trained_lora(base)
    idx = torch.randint(0, 24, (3, 16))
    adapted, _ = model(idx)
    merged = merge_lora(model)
    assert type(merged.blocks[0].attn.qkv) is torch.nn.Linear
    torch.testing.assert_close(merged(idx)[0], adapted, atol=1e-5, rtol=1e-5)
    # Pretrained rows did not move (the gradient hook, no weight decay); new rows did.
    torch.testing.assert_close(model.tok_emb.weight[:20], original)
    assert merged.lm_head.weight is merged.tok_emb.weight


def test_only_adapters_and_new_rows_train():
    model = _trained_lora(_base())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n == "tok_emb.weight" for n in trainable)


def test_adapter_alone_round_trips(tmp_path):
    model = _trained_lora(_base())
    save_adapter(tmp_path / "adapter", model, None)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    reloaded = load_adapter(_base(), tmp_path / "adapter")  # same base weights (seeded), adapter on top
    idx = torch.randint(0, 24, (2, 10))
    torch.testing.assert_close(reloaded(idx)[0], model(idx)[0])


def test_train_embedding_moves_every_row_and_still_merges_and_round_trips(tmp_path):
    base = _base()
    original = base.tok_emb.weight.detach().clone()
    model = _trained_lora(base, train_rows_from=0)  # lora.train_embedding=true
    assert (model.tok_emb.weight[:20] - original).abs().amax(dim=1).gt(0).all()  # each pretrained row moved
    adapters = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert trainable_parameters(model) == adapters + 24 * 32
    idx = torch.randint(0, 24, (3, 16))
    adapted, _ = model(idx)
    torch.testing.assert_close(merge_lora(model)(idx)[0], adapted, atol=1e-5, rtol=1e-5)
    save_adapter(tmp_path / "adapter", model, None)
    torch.testing.assert_close(load_adapter(_base(), tmp_path / "adapter")(idx)[0], adapted)


def test_bias_all_trains_every_bias_and_still_merges_and_round_trips(tmp_path):
    base = _base()
    original = {n: p.detach().clone() for n, p in base.named_parameters() if n.endswith(".bias")}
    model = _trained_lora(base, bias="all")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert trainable == biases | {"tok_emb.weight"} and any("norm" in n for n in biases)  # LayerNorm's too
    after = {n.replace(".base_layer", ""): p for n, p in model.named_parameters() if n.endswith(".bias")}
    assert after.keys() == original.keys() and not any(torch.equal(after[n], original[n]) for n in original)
    idx = torch.randint(0, 24, (3, 16))
    adapted, _ = model(idx)
    torch.testing.assert_close(merge_lora(model)(idx)[0], adapted, atol=1e-5, rtol=1e-5)
    save_adapter(tmp_path / "adapter", model, None)
    torch.testing.assert_close(load_adapter(_base(), tmp_path / "adapter")(idx)[0], adapted)
