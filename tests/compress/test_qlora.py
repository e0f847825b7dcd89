"""QLoRA: LoRA adapters over a frozen NF4 base learn while the base stays 4-bit and unchanged; the run
merges them into an ordinary float model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from minigpt.compress.quantize import main as quantize
from minigpt.losses.lm import lm_loss
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.run import train
from minigpt.stages.chat_model import ChatModel
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

pytest.importorskip("peft")
ALPHABET = "abcdefghijkl"
TASK = ["data=tasks/reversal", "data.tasks.reversal.min_len=1", "data.tasks.reversal.max_len=2",
        f"data.tasks.reversal.alphabet={ALPHABET}", "data.num_train=100", "data.num_val=8",
        "data.num_eval=4"]  # fmt: skip
LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["qkv", "proj", "fc"]}


@pytest.fixture
def nf4_folder(tiny_model, compose_command, tmp_path: Path) -> Path:
    """A 128-wide model (NF4 quantizes layers of whole 64·256 blocks) quantized to NF4."""
    tokenizer = CharTokenizer.train(ALPHABET + "reverse: ")
    model = tiny_model("gpt", n_layer=1, n_embd=128, block_size=32, vocab_size=tokenizer.vocab_size)
    base = save_model_folder(tmp_path / "base", model, tokenizer)
    return quantize(compose_command("quantize", f"run={base}", "method=nf4", f"out={tmp_path / 'nf4'}"))


def nf4_codes(model: nn.Module) -> dict[str, torch.Tensor]:
    """The packed 4-bit codes of every NF4 weight, by layer (the layer LoRA wraps keeps its name)."""
    return {
        name.removesuffix(".base_layer"): module.weight.quantized_data.clone()
        for name, module in model.named_modules()
        if type(getattr(module, "weight", None)).__name__ == "NF4Tensor"
    }


def test_adapters_learn_over_a_frozen_4bit_base_and_merge_to_float(nf4_folder: Path) -> None:
    model, tokenizer = load_model_folder(nf4_folder)
    before = nf4_codes(model)
    assert len(before) == 4  # qkv, attn proj, fc, mlp proj
    chat = ChatModel.prepare(model, tokenizer, LORA, "sft")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or n == "tok_emb.weight" for n in trained)
    optimizer = torch.optim.AdamW(chat.param_groups(model, 0.0)[0]["params"], lr=1e-2)
    batch = torch.tensor([tokenizer.encode("reverse: abc: cba\nreverse: lkj: jkl\n")[:32]])
    losses = []
    for _ in range(30):
        loss = lm_loss(model(batch[:, :-1])[0], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    after = nf4_codes(model)  # still NF4, codes untouched: only the adapters moved
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    merged = chat.merged(model)
    assert "quantization" not in merged.config.extra
    assert all(type(m.weight) is nn.Parameter for m in merged.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        torch.testing.assert_close(merged(batch)[0], model(batch)[0], atol=1e-4, rtol=1e-4)


def test_qlora_sft_run_writes_a_float_model_and_full_finetuning_is_refused(nf4_folder, compose_train, tmp_path) -> None:
    cfg = compose_train("stage=sft", f"init_from={nf4_folder}", *TASK, "lora.r=8", "trainer.max_steps=4",
                        "trainer.val_check_interval=4", toy_data=False)  # fmt: skip
    train(cfg)
    model, _ = load_model_folder(tmp_path / "run" / "model")
    assert "quantization" not in model.config.extra and (tmp_path / "run" / "adapter").is_dir()
    with pytest.raises(ConfigError, match="nf4-quantized model, whose weights cannot train; .* stage=sft lora.r=8"):
        train(compose_train("stage=sft", f"init_from={nf4_folder}", *TASK, toy_data=False))
