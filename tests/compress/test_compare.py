"""`evaluate.py run=<compressed> compare=<source>`: one table of sizes, perplexity and speed, with ratios."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from minigpt.compress.prune import main as prune
from minigpt.compress.quantize import main as quantize
from minigpt.evaluation.compare import memory_bytes, param_count
from minigpt.evaluation.report import evaluate_run
from minigpt.run import train


def test_compare_reports_what_quantization_and_pruning_cost_and_save(
    compose_train, compose_eval, compose_command, tmp_path, capsys
) -> None:
    train_cfg = compose_train("trainer.max_steps=30", "optim.lr=3e-3")
    train(train_cfg)
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(train_cfg, run_dir / ".hydra" / "config.yaml")
    q8 = quantize(compose_command("quantize", f"run={run_dir}", "method=int8_weight_only", f"out={tmp_path / 'q8'}"))
    play = train_cfg.data.corpus.paths[0]
    n50 = prune(compose_command("prune", f"run={run_dir}", "method=neurons", "sparsity=0.5",
                                f"out={tmp_path / 'n50'}", f"text=[{play}]", "tokens=2000"))  # fmt: skip
    evaluate = [f"compare={run_dir}", "num_samples=0", "batch_size=4", f"paths.cache_dir={tmp_path / 'cache'}"]

    table = evaluate_run(compose_eval(f"run={q8}", *evaluate))["compare"]
    assert json.loads((q8 / "eval.json").read_text())["compare"]["ratio"] == pytest.approx(table["ratio"])
    this, source, ratio = table["this"], table["compared"], table["ratio"]
    assert this["params"] == source["params"] and this["tokens_per_s"] > 0
    # The block linears shrink from 4 bytes to ~1 per weight; the float embedding keeps the total above 1/4.
    assert 0.25 < ratio["disk_bytes"] < 0.8 and 0.25 < ratio["memory_bytes"] < 0.8
    assert ratio["val/ppl"] == pytest.approx(1.0, abs=0.02)  # int8 weights: perplexity within 2 %
    assert "against" in capsys.readouterr().out

    pruned = evaluate_run(compose_eval(f"run={n50}", *evaluate))["compare"]["ratio"]
    assert pruned["params"] < 0.85 and pruned["nonzero_params"] == pytest.approx(pruned["params"], rel=1e-3)


def test_memory_bytes_counts_codes_and_scales_of_a_quantized_layer(tiny_model) -> None:
    from minigpt.compress.methods import block_linears, quantize_model

    model = tiny_model("gpt", n_layer=1)
    unique = {id(p): p for p in model.parameters()}.values()  # the tied embedding / head once
    assert memory_bytes(model) == 4 * sum(p.numel() for p in unique)
    shapes = [linear.weight.shape for _, linear in block_linears(model)]
    before = memory_bytes(model)
    quantize_model(model, "int8_weight_only")
    # Each (out × in) fp32 weight becomes out·in int8 codes, out fp32 scales and out int8 zero points.
    saved = sum(4 * out * inp - (out * inp + 4 * out + out) for out, inp in shapes)
    assert memory_bytes(model) == before - saved


def test_torch_ao_layers_count_their_packed_weights(tiny_model) -> None:
    from minigpt.compress.methods import quantize_model

    model = tiny_model("gpt", n_layer=1)
    params = param_count(model)
    assert params == model.num_params()
    quantize_model(model, "torch_dynamic")  # its weights are no parameters any more, but still count
    assert param_count(model) == params and model.num_params() < params
