"""LoRA adapters (Hu et al. 2021) on our `Transformer`, through `peft`, plus trainable new-token rows.

LoRA freezes a pretrained weight W (out × in) and learns a low-rank update: the layer computes
W·x + (α/r)·B·A·x with A (r × in), B (out × r), B initialised to 0 so training starts exactly at the
pretrained model (LoRA eq. 3). Only A and B train: r·(in + out) parameters per layer instead of in·out.

Chat tokens added for SFT have no pretrained meaning, so their embedding rows must learn too. Rather than
training the whole embedding, a gradient hook zeroes the gradient of every *old* row: the new rows are
the only part of the (possibly tied) embedding that changes, so merging stays exact even when the LM head
shares the embedding matrix. `train_rows_from=0` (`lora.train_embedding`) trains every row instead, as
peft's `modules_to_save` would. A pretrained embedding can be a poor basis for the fine-tuning data: in
our Shakespeare char model the digits' rows are nearly parallel (cosine ≈ 0.93), and LoRA with them frozen
stalled on arithmetic (docs/results.md, SFT). The whole embedding is vocab × n_embd parameters, a small share.

Files: an adapter folder holds peft's `adapter_config.json` + `adapter_model.safetensors`, the new rows
in `new_token_rows.safetensors`, and `tokenizer.json`; `load_adapter` rebuilds the model from a base
model folder and it. `merge_lora` folds the adapters into plain `nn.Linear` weights.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

try:
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer
except ImportError as err:  # peft is the optional `lora` extra
    raise ImportError("lora.r > 0 needs peft: pip install -e '.[lora]' (the dev extra includes it).") from err
from safetensors.torch import load_file, save_file
from torch import Tensor

from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write, atomic_write_text

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
NEW_ROWS = "new_token_rows.safetensors"
LoraBias = Literal["none", "all", "lora_only"]  # which biases train beside the adapters (see `lora_config`)


def lora_config(
    r: int, alpha: float, dropout: float, target_modules: Sequence[str], bias: LoraBias = "none"
) -> LoraConfig:
    """peft's `LoraConfig`, validated with our field names (`lora.r`, `lora.alpha`, ...).

    `bias`: `none`, `all` (every bias trains too, LayerNorm's included: BitFit, Ben Zaken et al. 2021, on
    top of the adapters) or `lora_only` (the biases of the adapted layers).
    """
    if r <= 0:
        raise ConfigError(f"lora.r={r} must be a positive rank (e.g. lora.r=8), or 0 to switch LoRA off.")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"lora.dropout={dropout} must be in [0, 1).")
    if not target_modules:
        raise ConfigError("lora.target_modules is empty; name linear layers to adapt, e.g. [qkv, proj, fc].")
    if bias not in ("none", "all", "lora_only"):
        raise ConfigError(f"lora.bias={bias!r} is unknown; use none, all or lora_only.")
    # peft annotates lora_alpha as int, but scales by alpha / r in floating point: a float α works.
    return LoraConfig(
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]
        lora_dropout=dropout,
        target_modules=list(target_modules),
        bias=bias,
    )


def apply_lora(model: Transformer, config: LoraConfig, train_rows_from: int | None = None) -> Transformer:
    """Inject LoRA adapters into `model` in place (every other weight frozen); returns `model`.

    `train_rows_from`: embedding rows from this id on (the added special tokens) stay trainable; 0 = all.
    """
    names = {name.rpartition(".")[2] for name, _ in model.named_modules()}
    targets = config.target_modules  # a list or set of layer names (peft also takes one regex string)
    missing = sorted(({targets} if isinstance(targets, str) else set(targets or ())) - names)
    if missing:
        raise ConfigError(
            f"lora.target_modules names {missing}, which this model does not have; "
            "its linear layers include qkv, proj, fc (GELU) or gate, up (SwiGLU)."
        )
    inject_adapter_in_model(config, model)
    model.lora_config = config
    model.lora_rows_from = train_rows_from
    if train_rows_from is not None and train_rows_from < model.tok_emb.num_embeddings:
        weight = model.tok_emb.weight
        weight.requires_grad_(True)

        def keep_new_rows(grad: Tensor) -> Tensor:
            grad = grad.clone()
            grad[:train_rows_from] = 0  # the pretrained rows stay exactly as they were
            return grad

        weight.register_hook(keep_new_rows)
    return model


def lora_param_groups(model: Transformer, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups for LoRA training: decay on the adapters, none on the embedding (nor biases).

    AdamW's decoupled decay shrinks every parameter it holds, gradient or not; decaying the embedding
    would move the frozen pretrained rows.
    """
    adapters = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    others = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    return [{"params": adapters, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def trainable_parameters(model: Transformer) -> int:
    """Parameters that training changes: the adapters (and biases) plus the trainable embedding rows."""
    n = sum(p.numel() for n_, p in model.named_parameters() if p.requires_grad and n_ != "tok_emb.weight")
    rows_from = getattr(model, "lora_rows_from", None)
    if rows_from is not None:
        n += (model.tok_emb.num_embeddings - rows_from) * model.config.n_embd
    return n


def merge_lora(model: Transformer) -> Transformer:
    """A copy of `model` with every adapter folded into its base weight: W ← W + (α/r)·B·A.

    Over a quantized base (QLoRA) the base weights are dequantized first: the merged model is a float one.
    """
    merged = copy.deepcopy(model)
    if merged.config.extra.get("quantization"):
        from minigpt.compress.methods import dequantize_model

        dequantize_model(merged)
    for name, module in list(merged.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent), child, module.get_base_layer())
    for attr in ("lora_config", "lora_rows_from"):
        merged.__dict__.pop(attr, None)
    merged.requires_grad_(True)
    return merged


def save_adapter(folder: str | Path, model: Transformer, tokenizer: Tokenizer | None) -> Path:
    """Write the adapter alone: LoRA weights and config, the new embedding rows, the tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    atomic_write(folder / ADAPTER_WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    config = model.lora_config.to_dict()
    config["target_modules"] = sorted(config["target_modules"])  # a set in peft; JSON needs a list
    config["new_token_rows_from"] = model.lora_rows_from
    atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(config, indent=2, default=str))
    rows_from = model.lora_rows_from
    if rows_from is not None:
        rows = {"rows": model.tok_emb.weight[rows_from:].detach().contiguous()}
        atomic_write(folder / NEW_ROWS, lambda tmp: save_file(rows, str(tmp)))
    if tokenizer is not None:
        tokenizer.save(folder)
    return folder


def load_adapter(model: Transformer, folder: str | Path) -> Transformer:
    """Apply a saved adapter to a base `model` (in place): grow the vocabulary, set rows, load LoRA."""
    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).exists():
        raise ConfigError(f"{folder} has no {ADAPTER_CONFIG}; pass the adapter/ folder a LoRA SFT run wrote.")
    saved = json.loads((folder / ADAPTER_CONFIG).read_text())
    config = lora_config(
        saved["r"], saved["lora_alpha"], saved["lora_dropout"], saved["target_modules"], saved.get("bias", "none")
    )
    rows_from = saved.get("new_token_rows_from")
    if rows_from is not None and (folder / NEW_ROWS).exists():
        rows = load_file(str(folder / NEW_ROWS))["rows"]
        model.resize_vocab(rows_from + rows.shape[0])
        with torch.no_grad():
            model.tok_emb.weight[rows_from:] = rows
    apply_lora(model, config, rows_from)
    set_peft_model_state_dict(model, load_file(str(folder / ADAPTER_WEIGHTS)))
    return model
