"""Quantization: our reference agrees with torchao, quantized folders round-trip and generate, bad input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minigpt.cli.command import USER_ERROR_STATUS
from minigpt.compress.methods import METHODS, inner_tensors, quantize_model
from minigpt.compress.quantize import main as quantize
from minigpt.compress.reference import dequantize_symmetric, pack_int4, quantize_symmetric, unpack_int4
from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.tokenizer.char import CharTokenizer


def test_reference_formula_on_a_hand_checked_row() -> None:
    # absmax 2.55 → s = 2.55 / 127.5 = 0.02; 1.0 / 0.02 = 50, −2.55 / 0.02 = −127.5 → rounds to −128 (in range).
    codes, scale = quantize_symmetric(torch.tensor([[1.0, -2.55, 0.0, 0.011]]), bits=8)
    assert scale.item() == pytest.approx(0.02)
    assert codes.tolist() == [[50, -128, 0, 1]]
    # int4 in groups of 2: [0.75, -0.1] → s = 0.1, codes [7 (7.5 clamped), -1]; [0.0, 0.0] → codes 0.
    codes, scale = quantize_symmetric(torch.tensor([[0.75, -0.1, 0.0, 0.0]]), bits=4, group_size=2)
    assert codes.tolist() == [[7, -1, 0, 0]]
    assert dequantize_symmetric(codes, scale)[0, :2].tolist() == pytest.approx([0.7, -0.1])


def test_int4_packing_round_trips() -> None:
    codes = torch.arange(-8, 8, dtype=torch.int8).repeat(3).reshape(6, 8)
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == codes.numel() // 2
    assert torch.equal(unpack_int4(packed, codes.shape), codes)


@pytest.mark.parametrize(("method", "bits", "group_size"), [("int8_weight_only", 8, None), ("int4_weight_only", 4, 32)])
def test_reference_agrees_with_torchao(tiny_model, method: str, bits: int, group_size: int | None) -> None:
    model = tiny_model("gpt", n_embd=64)
    weights = {name: m.weight.detach().clone() for name, m in model.named_modules() if name.endswith("attn.qkv")}
    quantize_model(model, method, group_size or 32)
    for name, weight in weights.items():
        parts = inner_tensors(model.get_submodule(name))
        codes, scale = quantize_symmetric(weight, bits, group_size)
        # Same scales to float precision; codes equal except where w/s sits on a rounding tie (off by one).
        torch.testing.assert_close(parts["scale"].reshape(scale.shape), scale)
        assert (parts["qdata"].int() - codes.int()).abs().max() <= 1
        assert (parts["qdata"] != codes).float().mean() < 0.01
        assert torch.all(parts["zero_point"] == 0)
        # So the dequantized weights differ by at most one step (a tie), nowhere by more.
        ours, theirs = dequantize_symmetric(codes, scale), model.get_submodule(name).weight.dequantize()
        assert (ours - theirs).abs().max() <= 1.0001 * scale.max()


@pytest.fixture
def float_folder(tiny_model, tmp_path: Path) -> Path:
    """A 128-wide one-layer model (NF4 needs 64·256-weight layers) with a char tokenizer, saved."""
    tokenizer = CharTokenizer.train("abcdefgh :\n")
    model = tiny_model("gpt", n_layer=1, n_embd=128, vocab_size=tokenizer.vocab_size)
    return save_model_folder(tmp_path / "fp32", model, tokenizer)


@pytest.mark.parametrize("method", METHODS)
def test_quantized_folder_saves_loads_and_generates(
    compose_command, float_folder: Path, tmp_path: Path, method: str
) -> None:
    out = quantize(compose_command("quantize", f"run={float_folder}", f"method={method}", f"out={tmp_path / method}"))
    fp32, _ = load_model_folder(float_folder)
    model, tokenizer = load_model_folder(out)
    assert model.config.extra["quantization"]["method"] == method
    assert (out / "model.safetensors").stat().st_size < 0.5 * (float_folder / "model.safetensors").stat().st_size
    idx = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    float_logits = fp32(idx)[0]
    # Loading rebuilds exactly the model that quantizing the float weights gives …
    assert quantize_model(fp32, method) == model.config.extra["quantization"]["layers"]
    assert torch.equal(model(idx)[0], fp32(idx)[0])
    # … whose logits stay near the float model's (random weights of std 0.02: logits of size ~0.5).
    assert (model(idx)[0] - float_logits).abs().max() < 0.1
    tokens = generate(model, [tokenizer.encode("ab")], GenerationConfig(max_new_tokens=5, strategy="greedy"))
    assert len(tokens.token_lists()[0]) == 5


def test_requantizing_and_unknown_method_are_one_sentence_errors(
    compose_command, float_folder, tmp_path, capsys
) -> None:
    q8 = quantize(
        compose_command("quantize", f"run={float_folder}", "method=int8_weight_only", f"out={tmp_path / 'q8'}")
    )
    for overrides, message in [
        ([f"run={q8}", "method=nf4"], "is already quantized (int8_weight_only)"),
        ([f"run={float_folder}", "method=int3"], "method=int3 is unknown"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            quantize(compose_command("quantize", *overrides, f"out={tmp_path / 'x'}"))
        assert exit_info.value.code == USER_ERROR_STATUS
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err


def test_a_quantized_folder_does_not_export_to_hf(compose_command, float_folder, tmp_path) -> None:
    from minigpt.export.hf import family
    from minigpt.utils.errors import ConfigError

    q4 = quantize(
        compose_command("quantize", f"run={float_folder}", "method=int4_weight_only", f"out={tmp_path / 'q4'}")
    )
    with pytest.raises(
        ConfigError, match=f"int4_weight_only-quantized .* export the float model it came from \\({float_folder}\\)"
    ):
        family(load_model_folder(q4)[0].config)
