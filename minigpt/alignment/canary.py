"""Canary exposure (Carlini et al. 2019, "The Secret Sharer", 1802.08232): how much a model memorised a
planted random secret.

Plant a canary s[r] = template.format(r) with r drawn from a randomness space R (here: `digits` random
digits) in the training text; after training, rank its log-perplexity among the other candidates:

    Px(s[r]) = −Σ_t log₂ P(x_t | x_<t)                         (the sequence's log-perplexity, in bits)
    rank(s[r]) = 1 + |{r' ∈ R : Px(s[r']) < Px(s[r])}|
    exposure(s[r]) = log₂ |R| − log₂ rank(s[r])                 (§4.1, eq. for exposure)

Exposure is 0 when the canary is the least likely candidate and log₂ |R| when it is the most likely (the
model would output it first). A model that never saw it has an expected exposure near 1 bit. When |R|
is larger than `max_candidates`, R is sampled (§4.2's estimate): exposure ≈ −log₂ (rank / (m + 1)) with
rank among m random candidates — which saturates at log₂ (m + 1).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError


@torch.no_grad()
def log_perplexity(
    model: Transformer, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    """Px of each text in bits: −Σ_t log₂ P(x_t | x_<t) over its tokens after the first (texts of equal length)."""
    ids = torch.tensor([tokenizer.encode(t) for t in texts])
    if ids.ndim != 2:
        raise ConfigError("log_perplexity needs texts of one token length (candidates of one template).")
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size].to(model.tok_emb.weight.device)
        logits, _ = model(batch[:, :-1])
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch[:, 1:, None])[..., 0]  # (B, T − 1)
        out.append(-logp.sum(dim=1).cpu() / math.log(2))
    model.train(was_training)
    return torch.cat(out)


def canary_text(template: str, secret: int, digits: int, sep: str = "") -> str:
    """The canary for `secret`, zero-padded, its digits joined by `sep` ("the pin is 0471"; `sep=" "` gives one
    token per digit with a BPE tokenizer too, so that every candidate has the same length)."""
    return template.format(sep.join(f"{secret:0{digits}d}"))


def exposure(
    model: Transformer,
    tokenizer: Tokenizer,
    template: str,
    secret: int,
    digits: int = 4,
    max_candidates: int = 10_000,
    seed: int = 0,
    sep: str = "",
) -> float:
    """The exposure of the canary `template.format(secret)` among the 10^digits candidates (see module doc)."""
    space = 10**digits
    if not 0 <= secret < space:
        raise ConfigError(f"canary secret={secret} must have at most digits={digits} digits.")
    if space <= max_candidates:
        others = [r for r in range(space) if r != secret]
    else:
        others = random.Random(seed).sample(range(space), max_candidates + 1)
        others = [r for r in others if r != secret][:max_candidates]
    texts = [canary_text(template, r, digits, sep) for r in (secret, *others)]
    px = log_perplexity(model, tokenizer, texts)
    rank = 1 + int((px[1:] < px[0]).sum())
    if space <= max_candidates:
        return math.log2(space) - math.log2(rank)
    return -math.log2(rank / (len(others) + 1))
