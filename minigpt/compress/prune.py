"""Prune a trained model and save it as a model folder that every command reads.

    python -m minigpt.compress.prune run=outputs/train/<run> method=magnitude sparsity=0.5 out=p50/
    python -m minigpt.compress.prune run=... method=wanda sparsity=0.5 out=w50/       # |W|·‖X‖ per row
    python -m minigpt.compress.prune run=... method=wanda sparsity=0.5 n_m=2:4 out=w24/
    python -m minigpt.compress.prune run=... method=heads sparsity=0.5 out=h50/       # smaller matrices
    python -m minigpt.compress.prune run=... method=neurons sparsity=0.5 out=n50/
    python -m minigpt.compress.prune run=<MoE run> method=experts sparsity=0.5 out=e50/

magnitude and wanda zero weights of the block linears (`minigpt.compress.sparsity`); heads and neurons
remove them (`minigpt.compress.structured`); experts keeps the most used experts of each MoE layer
(`minigpt.model.moe_surgery`, as `python -m minigpt.cli.moe_prune`). Calibration text (`text`, `tokens`)
feeds Wanda's activation norms, the structured importances and the expert usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from minigpt.cli.command import command
from minigpt.cli.moe_prune import token_batches
from minigpt.compress.calibration import input_norms
from minigpt.compress.sparsity import check_sparsity, keep_mask, magnitude_scores, n_m_mask, parse_n_m, wanda_scores
from minigpt.compress.structured import prune_heads, prune_neurons
from minigpt.data.corpora import ShakespearePlays, TextFiles
from minigpt.model.folder import load_model_and_tokenizer, save_model_folder
from minigpt.model.moe_surgery import expert_load, prune_experts
from minigpt.model.transformer import Transformer
from minigpt.utils.errors import ConfigError

METHODS = ("magnitude", "wanda", "heads", "neurons", "experts")


def block_weights(model: Transformer) -> Iterator[tuple[str, nn.Linear]]:
    """(name, layer) of every linear layer in the blocks: what unstructured pruning thins out."""
    for name, module in model.named_modules():
        if name.startswith("blocks.") and isinstance(module, nn.Linear):
            yield name, module


@torch.no_grad()
def prune_unstructured(
    model: Transformer, method: str, sparsity: float, norms: dict[str, Tensor] | None, n_m: str | None
) -> float:
    """Zero the block weights by magnitude (per layer) or Wanda (per row), freely or N:M; returns the sparsity."""
    zeros = total = 0
    for name, linear in block_weights(model):
        weight = linear.weight
        scores = wanda_scores(weight, norms[name]) if norms is not None else magnitude_scores(weight)
        mask = n_m_mask(scores, *parse_n_m(n_m)) if n_m else keep_mask(scores, sparsity, per_row=method == "wanda")
        weight.mul_(mask)
        zeros, total = zeros + int((~mask).sum()), total + mask.numel()
    return zeros / total


@command("prune")
def main(cfg: DictConfig) -> Path:
    """Prune `cfg.run`'s model with `cfg.method` at `cfg.sparsity`, save it to `cfg.out`; returns the folder."""
    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method} is unknown; choose one of {', '.join(METHODS)}.")
    check_sparsity(cfg.sparsity)
    if cfg.n_m:
        n, m = parse_n_m(cfg.n_m)
        if cfg.method not in ("magnitude", "wanda") or abs(cfg.sparsity - (1 - n / m)) > 1e-9:
            raise ConfigError(
                f"n_m={cfg.n_m} applies to method=magnitude or wanda with sparsity={1 - n / m:g}; "
                f"got method={cfg.method} sparsity={cfg.sparsity}."
            )
    model, tokenizer = load_model_and_tokenizer(cfg.run)
    if model.config.extra.get("quantization"):
        raise ConfigError(f"run={cfg.run} is quantized; prune the float model first, then quantize the pruned one.")

    def calibration() -> Iterator[Tensor]:
        corpus = TextFiles(list(cfg.text)) if cfg.text else ShakespearePlays()
        return token_batches(corpus, tokenizer, model.config.block_size, cfg.tokens)

    before = model.num_params()
    if cfg.method == "experts":
        if model.config.moe is None:
            raise ConfigError(f"run={cfg.run} holds a dense model (no experts); method=experts needs an MoE model.")
        keep = max(
            model.config.moe.top_k, model.config.moe.num_experts - round(cfg.sparsity * model.config.moe.num_experts)
        )
        model = prune_experts(model, expert_load(model, calibration()), keep)
        done = f"{keep} experts kept per MoE layer"
    elif cfg.method in ("heads", "neurons"):
        norms = input_norms(model, calibration())
        if cfg.method == "heads":
            done = f"{prune_heads(model, norms, cfg.sparsity)} head groups kept per layer"
        else:
            done = f"{prune_neurons(model, norms, cfg.sparsity)} MLP neurons kept per layer"
    else:
        norms = input_norms(model, calibration()) if cfg.method == "wanda" else None
        done = f"{prune_unstructured(model, cfg.method, cfg.sparsity, norms, cfg.n_m):.1%} of the block weights zeroed"
    model.config.extra["pruning"] = {"method": cfg.method, "sparsity": cfg.sparsity, "n_m": cfg.n_m}
    folder = save_model_folder(cfg.out, model, tokenizer)
    print(f"{cfg.method}: {done}; parameters {before:,} → {model.num_params():,}")
    print(f"pruned model: {folder}")
    return folder


if __name__ == "__main__":
    main()
