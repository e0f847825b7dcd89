"""`evaluate.py run=<compressed> compare=<source>`: what compression cost and what it saved, side by side.

For both models: parameters (and how many are non-zero, for pruned ones), bytes of `model.safetensors`,
bytes the weights take in memory, validation perplexity, task gold scores, and greedy decoding tokens/s on
the same prompt. "In memory" counts the tensors the model holds (a quantized weight: its codes and scales);
it is what loading the model adds to a process's resident memory, without the interpreter and libraries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.folder import WEIGHTS
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer

# The rows of the table, in order, and whether a larger value is better (for the ratio's reading).
ROWS = ("params", "nonzero_params", "disk_bytes", "memory_bytes", "val/ppl", "tokens_per_s")


def _tensor_bytes(tensor: Tensor) -> int:
    """Bytes of a tensor, or of the plain tensors a tensor subclass (torchao) is made of."""
    if type(tensor) not in (Tensor, nn.Parameter) and hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def _weights(model: nn.Module, buffers: bool = False) -> list[Tensor]:
    """Every distinct parameter (and buffer) of the model, and `torch.ao`'s packed weights (which are no
    parameters: their int8 codes stand for them); tied weights once."""
    distinct: dict[int, Tensor] = {}  # keeps each tensor alive, so that no id is reused while counting
    for module in model.modules():
        tensors = list(module.parameters(recurse=False))
        tensors += list(module.buffers(recurse=False)) if buffers else []
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            weight, bias = module._packed_params._weight_bias()
            tensors += [weight.int_repr()] + ([bias] if bias is not None else [])
        distinct.update((id(t), t) for t in tensors)
    return list(distinct.values())


def memory_bytes(model: nn.Module) -> int:
    """Bytes of every distinct tensor the model holds (a quantized weight: its codes and scales)."""
    return sum(_tensor_bytes(t) for t in _weights(model, buffers=True))


def param_count(model: nn.Module) -> int:
    """Weights and biases, however stored (a quantized weight counts its out × in entries)."""
    return sum(t.numel() for t in _weights(model))


def nonzero_params(model: nn.Module) -> int:
    """Weights and biases that are not exactly zero (a quantized weight counts as dense)."""
    total = 0
    for tensor in _weights(model):
        plain = type(tensor) in (Tensor, nn.Parameter)
        total += int(tensor.count_nonzero()) if plain else tensor.numel()
    return total


@torch.no_grad()
def tokens_per_second(model: Transformer, prompt: list[int], new_tokens: int, repeats: int = 3) -> float:
    """Greedy decoding speed (KV cache, batch 1): new tokens / seconds, the best of `repeats` timed runs."""
    new_tokens = max(1, min(new_tokens, model.config.block_size - len(prompt)))
    config = GenerationConfig(max_new_tokens=new_tokens, strategy="greedy")
    generate(model, [prompt], config)  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = generate(model, [prompt], config)
        best = min(best, time.perf_counter() - start)
    return len(out.token_lists()[0]) / best


def profile(
    model: Transformer,
    folder: Path,
    tokenizer: Tokenizer,
    prompt: str,
    quality: Callable[[Transformer, Tokenizer], dict[str, Any]],
    new_tokens: int = 128,
) -> dict[str, Any]:
    """Every row of the comparison for one model; `quality` adds perplexity and task scores."""
    ids = tokenizer.encode(prompt, allow_special=True) or [tokenizer.eos_id or 0]
    return {
        "folder": str(folder),
        "params": param_count(model),
        "nonzero_params": nonzero_params(model),
        "disk_bytes": (folder / WEIGHTS).stat().st_size,
        "memory_bytes": memory_bytes(model),
        "tokens_per_s": tokens_per_second(model, ids, new_tokens),
        **quality(model, tokenizer),
    }


def ratios(this: dict[str, Any], source: dict[str, Any]) -> dict[str, float]:
    """this / source for every number both have (task scores under `tasks/<name>`)."""
    flat_this, flat_source = flatten(this), flatten(source)
    return {k: flat_this[k] / v for k, v in flat_source.items() if k in flat_this and v}


def flatten(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of a profile, task scores as `tasks/<name>`."""
    flat = {k: float(v) for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    flat.update({f"tasks/{k}": float(v) for k, v in row.get("tasks", {}).items()})
    return flat
