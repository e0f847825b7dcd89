"""Text generation: plain sampling by full recomputation (the KV-cache engine builds on this API)."""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.model.transformer import Transformer


@torch.no_grad()
def sample(
    model: Transformer,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Append `max_new_tokens` sampled tokens to `prompt` (B, T); greedy when `temperature == 0`.

    Recomputes the whole (cropped) context each step: O(T²) per token, fine for samples during training.
    """
    idx = prompt
    block = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block:])
        logits = logits[:, -1, :].float()
        if temperature == 0:
            next_id = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_id = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        idx = torch.cat([idx, next_id], dim=1)
    return idx
