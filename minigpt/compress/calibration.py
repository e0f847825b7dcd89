"""Calibration statistics for pruning: the L2 norm of every input channel of every block linear layer.

Run a few batches of ordinary text through the model and accumulate, for each `nn.Linear` in the blocks,
Σ x_j² over all tokens of its input channel j; ‖X_j‖₂ is its square root. Wanda needs it for each layer's
input, and structured pruning for the inputs of the output projections (heads, MLP neurons).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from minigpt.model.transformer import Transformer
from minigpt.utils.modes import eval_mode


@torch.no_grad()
def input_norms(model: Transformer, batches: Iterable[Tensor]) -> dict[str, Tensor]:
    """{layer name: ‖X_j‖₂ (in_features,)} for every linear layer in the blocks, over `batches` of token ids."""
    squares: dict[str, Tensor] = {}

    def record(name: str) -> object:
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0].reshape(-1, args[0].shape[-1]).float()  # (tokens, in)
            squares[name] = squares.get(name, 0) + x.pow(2).sum(0)

        return hook

    handles = [
        module.register_forward_pre_hook(record(name))
        for name, module in model.named_modules()
        if name.startswith("blocks.") and isinstance(module, nn.Linear)
    ]
    try:
        with eval_mode(model):
            for batch in batches:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: total.sqrt() for name, total in squares.items()}
