"""Pruning: Wanda beats magnitude on outlier channels, structured pruning shrinks shapes and still runs,
N:M masks keep N of every M, the cubic schedule, one-sentence errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minigpt.cli.command import USER_ERROR_STATUS
from minigpt.compress.calibration import input_norms
from minigpt.compress.prune import main as prune
from minigpt.compress.sparsity import cubic_sparsity, keep_mask, magnitude_scores, n_m_mask, wanda_scores
from minigpt.compress.structured import prune_heads, prune_neurons
from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.folder import load_model_folder, save_model_folder
from minigpt.tokenizer.char import CharTokenizer


def test_wanda_beats_magnitude_on_a_layer_with_outlier_input_channels() -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(32, 64, generator=gen)
    # Four input channels carry activations 30× larger than the others (the outlier features of LLM.int8()).
    channel_scale = torch.ones(64)
    channel_scale[[3, 17, 40, 60]] = 30.0
    calibration, held_out = (torch.randn(256, 64, generator=gen) * channel_scale for _ in range(2))
    norms = calibration.norm(dim=0)
    errors = {}
    for name, scores in [("magnitude", magnitude_scores(weight)), ("wanda", wanda_scores(weight, norms))]:
        pruned = weight * keep_mask(scores, 0.5, per_row=True)
        errors[name] = (held_out @ (weight - pruned).T).norm() / (held_out @ weight.T).norm()
    # Magnitude drops about half the weights on the loud channels, whose error dominates; Wanda keeps them.
    assert errors["wanda"] < 0.6 * errors["magnitude"]


def test_keep_mask_and_n_m_mask_count_what_they_keep() -> None:
    scores = torch.arange(24.0).reshape(3, 8).flip(1)
    assert keep_mask(scores, 0.25, per_row=True).sum(dim=1).tolist() == [6, 6, 6]
    layer = keep_mask(scores, 0.5, per_row=False)  # per layer: the 12 highest of all 24 (rows 1 and 2)
    assert layer.sum() == 12 and layer[0].sum() == 0
    mask = n_m_mask(torch.rand(4, 16, generator=torch.Generator().manual_seed(1)), 2, 4)
    assert torch.all(mask.reshape(-1, 4).sum(dim=1) == 2)


def test_cubic_schedule_rises_fast_then_flattens() -> None:
    # s_t = 0.8 + (0 − 0.8)(1 − t/100)³: t=50 → 0.8 − 0.8/8 = 0.7.
    values = [cubic_sparsity(t, 0.8, 0.0, 0, 100) for t in (-5, 0, 50, 100, 200)]
    assert values == pytest.approx([0.0, 0.0, 0.7, 0.8, 0.8])


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_structured_pruning_shrinks_shapes_and_removes_the_least_important_head(tiny_model, family: str) -> None:
    model = tiny_model(family, init_std=0.3, n_head=4, n_kv_head=4 if family == "gpt" else 2)
    batches = [torch.randint(0, 64, (4, 32), generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():  # the first head group writes nothing to the residual stream: it must go first
        model.blocks[0].attn.proj.weight[:, : 8 if family == "gpt" else 16] = 0
    norms = input_norms(model, batches)
    groups = prune_heads(model, norms, 0.5)
    prune_neurons(model, norms, 0.25)
    attn, mlp = model.blocks[0].attn, model.blocks[0].ffn
    heads = model.config.n_head
    assert (groups, heads, model.config.n_kv_head) == ((2, 2, 2) if family == "gpt" else (1, 2, 1))
    assert attn.qkv.weight.shape == ((heads + 2 * groups) * 8, 32) and attn.proj.weight.shape == (32, heads * 8)
    assert model.config.mlp_hidden == 96 and mlp.proj.weight.shape == (32, 96)
    assert model.blocks[0].attn.proj.weight.abs().sum(dim=0).min() > 0  # the silent head was removed
    logits, _ = model(batches[0])
    assert logits.shape == (4, 32, 64) and torch.isfinite(logits).all()


def test_pruned_folders_generate_and_export_to_hf(tiny_model, compose_command, play_file: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from minigpt.cli.export_hf import main as export

    tokenizer = CharTokenizer.train(play_file.read_text())
    source = save_model_folder(tmp_path / "llama", tiny_model("llama", vocab_size=tokenizer.vocab_size), tokenizer)
    calibrate = [f"text=[{play_file}]", "tokens=2000"]
    for method, sparsity in [("heads", 0.5), ("neurons", 0.5), ("wanda", 0.5)]:
        out = prune(
            compose_command(
                "prune",
                f"run={source}",
                f"method={method}",
                f"sparsity={sparsity}",
                f"out={tmp_path / method}",
                *calibrate,
            )
        )
        model, _ = load_model_folder(out)
        tokens = generate(model, [tokenizer.encode("ANNA")], GenerationConfig(max_new_tokens=4, strategy="greedy"))
        assert len(tokens.token_lists()[0]) == 4
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            export(compose_command("export_hf", f"run={out}", f"out={tmp_path / 'hf' / method}"))
        )
        idx = torch.tensor([tokenizer.encode("ANNA:\nthe river")])
        with torch.no_grad():
            assert (hf(idx).logits - model(idx)[0]).abs().max() < 1e-4
    assert model.config.extra["pruning"] == {"method": "wanda", "sparsity": 0.5, "n_m": None}
    w24 = prune(
        compose_command(
            "prune", f"run={source}", "method=wanda", "sparsity=0.5", "n_m=2:4", f"out={tmp_path / 'w24'}", *calibrate
        )
    )
    weight = load_model_folder(w24)[0].blocks[1].ffn.up.weight
    assert torch.all((weight != 0).reshape(-1, 4).sum(dim=1) == 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=wanda", "sparsity=1.0"], "sparsity=1.0 must be in [0, 1)"),
        (["method=wanda", "sparsity=-0.1"], "sparsity=-0.1 must be in [0, 1)"),
        (["method=random", "sparsity=0.5"], "method=random is unknown"),
        (["method=heads", "sparsity=0.5", "n_m=2:4"], "n_m=2:4 applies to method=magnitude or wanda"),
        (["method=experts", "sparsity=0.5"], "holds a dense model"),
    ],
)
def test_bad_pruning_options_are_one_sentence_errors(
    tiny_model, compose_command, tmp_path, capsys, overrides, message
) -> None:
    tokenizer = CharTokenizer.train("ab: \n")
    source = save_model_folder(tmp_path / "m", tiny_model(vocab_size=tokenizer.vocab_size), tokenizer)
    with pytest.raises(SystemExit) as exit_info:
        prune(compose_command("prune", f"run={source}", *overrides, f"out={tmp_path / 'x'}"))
    assert exit_info.value.code == USER_ERROR_STATUS
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
