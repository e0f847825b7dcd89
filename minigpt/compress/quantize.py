"""Quantize a trained model's weights and save it as a model folder that every command reads.

    python -m minigpt.compress.quantize run=outputs/train/<run> method=int8_weight_only out=q8/
    python -m minigpt.compress.quantize run=... method=int4_weight_only group_size=32 out=q4/
    python -m minigpt.compress.quantize run=... method=nf4 out=nf4/      # the base of QLoRA (lora.r=8)

Methods and their math: `minigpt.compress.methods` and `minigpt.compress.reference`; the folder layout:
`minigpt.compress.storage`; numbers: docs/compression.md.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from minigpt.cli.command import command
from minigpt.compress.methods import check_method, quantize_model
from minigpt.model.folder import WEIGHTS, load_model_folder, resolve_model_folder, save_model_folder
from minigpt.utils.errors import ConfigError


@command("quantize")
def main(cfg: DictConfig) -> Path:
    """Quantize `cfg.run`'s model with `cfg.method`, save it to `cfg.out`, print the sizes; returns the folder."""
    check_method(cfg.method, cfg.group_size)
    source = resolve_model_folder(cfg.run, field="run")
    model, tokenizer = load_model_folder(source, field="run")
    if done := model.config.extra.get("quantization"):
        raise ConfigError(
            f"run={cfg.run} is already quantized ({done['method']}); quantize the float model it came from instead."
        )
    layers = quantize_model(model, cfg.method, cfg.group_size)
    if not layers:
        raise ConfigError(f"method={cfg.method} found no layer of a shape it can quantize in run={cfg.run}.")
    model.config.extra["quantization"] = {
        "method": cfg.method,
        "group_size": cfg.group_size,
        "layers": layers,
        "source": str(source),
    }
    folder = save_model_folder(cfg.out, model, tokenizer)
    before, after = (source / WEIGHTS).stat().st_size, (folder / WEIGHTS).stat().st_size
    print(f"{cfg.method}: {len(layers)} linear layers quantized; {WEIGHTS} {before:,} → {after:,} bytes")
    print(f"quantized model: {folder}")
    return folder


if __name__ == "__main__":
    main()
