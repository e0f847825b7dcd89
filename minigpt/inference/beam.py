"""Beam search over the KV cache, batched: each prompt keeps `num_beams` running hypotheses.

Every step scores all `num_beams × V` one-token extensions of a prompt's beams by their summed
log-probability, keeps the best `num_beams` that did not stop as the next beams (the cache rows are
reordered to follow them), and moves the best stopping ones into a pool of `num_beams` finished
hypotheses. A finished hypothesis of n new tokens is ranked by  Σ log p / n^α  (α = `length_penalty`,
Wu et al. 2016, GNMT §7, in the simple form `transformers` uses): α > 0 favours longer outputs.

The bookkeeping follows `transformers`' beam search so that both return the same tokens:
* 2·num_beams candidates are kept per step (more with several stop tokens), so that num_beams of
  them are still running even if the others stop; only the top num_beams may enter the pool;
* at `max_new_tokens` every candidate stops and competes for the pool;
* a prompt is done when its pool is full and the best running beam, normalised by its current length,
  cannot beat the worst pooled score; with `early_stopping`, as soon as the pool is full.
"""

from __future__ import annotations

import torch
from torch import Tensor

from minigpt.inference.config import Generation, GenerationConfig
from minigpt.inference.decoder import BatchDecoder

NEG_INF = float("-inf")


def _take(values: Tensor, index: Tensor) -> Tensor:
    """`values` (B, M, …) gathered along dim 1 by `index` (B, K) → (B, K, …)."""
    index = index.reshape(*index.shape, *([1] * (values.dim() - 2))).expand(*index.shape, *values.shape[2:])
    return values.gather(1, index)


def _extend(history: Tensor, source: Tensor, new: Tensor, t: int) -> Tensor:
    """Copies of the histories (B, K, steps) of beams `source` (B, M), with `new` (B, M) at step `t`."""
    out = _take(history, source)
    out[:, :, t] = new
    return out


def beam_search(decoder: BatchDecoder, config: GenerationConfig, pad_id: int) -> Generation:
    """Run beam search for every prompt of `decoder`; returns the best `num_return_sequences` per prompt."""
    beams, steps, alpha = config.num_beams, config.max_new_tokens, config.length_penalty
    logits = decoder.prefill()
    batch, device = decoder.batch_size, logits.device
    decoder.select(torch.arange(batch, device=device).repeat_interleave(beams), group=beams)  # one prefill per prompt
    logits = logits.repeat_interleave(beams, dim=0)
    vocab = logits.shape[-1]
    n_cand = min(max(2, 1 + len(config.stop_tokens)) * beams, beams * vocab)
    stop_ids = torch.tensor(config.stop_tokens, dtype=torch.long, device=device)
    may_finish = torch.arange(n_cand, device=device) < beams  # only the top num_beams candidates pool

    # Running beams. All beams start as copies of the prompt: only beam 0 may expand at the first step,
    # otherwise the first step would pick the same token num_beams times.
    run_scores = torch.zeros(batch, beams, device=device)
    run_scores[:, 1:] = NEG_INF
    run_tokens = torch.full((batch, beams, steps), pad_id, dtype=torch.long, device=device)
    run_logp = torch.zeros(batch, beams, steps, device=device)
    # The pool of finished hypotheses, sorted best first; a -inf score marks an empty slot.
    pool = {
        "scores": torch.full((batch, beams), NEG_INF, device=device),
        "tokens": run_tokens.clone(),
        "logprobs": run_logp.clone(),
        "lengths": torch.zeros(batch, beams, dtype=torch.long, device=device),
        "stopped": torch.zeros(batch, beams, dtype=torch.bool, device=device),
    }
    improvable = torch.ones(batch, dtype=torch.bool, device=device)

    for t in range(steps):
        logp = torch.log_softmax(logits.float(), dim=-1).view(batch, beams * vocab)
        total = (logp.view(batch, beams, vocab) + run_scores.unsqueeze(-1)).view(batch, beams * vocab)
        cand_scores, flat = torch.topk(total, n_cand, dim=-1)  # (B, C), best first
        source, token, cand_logp = flat // vocab, flat % vocab, logp.gather(1, flat)
        is_stop = torch.isin(token, stop_ids)
        last = t == steps - 1
        ends = is_stop | last

        # Pool: merge newly finished candidates (normalised scores) with the pooled ones, keep the best.
        pool_full = (pool["scores"] > NEG_INF).all(dim=1)
        accepting = improvable & ~(pool_full & config.early_stopping)
        accept = ends & may_finish & accepting.unsqueeze(1)
        if last or bool(accept.any()):
            new = {
                "scores": torch.where(accept, cand_scores / (t + 1) ** alpha, NEG_INF),
                "tokens": _extend(run_tokens, source, token, t),
                "logprobs": _extend(run_logp, source, cand_logp, t),
                "lengths": torch.full_like(token, t + 1),
                "stopped": is_stop,
            }
            best = torch.topk(torch.cat([pool["scores"], new["scores"]], dim=1), beams, dim=1).indices
            pool = {key: _take(torch.cat([pool[key], new[key]], dim=1), best) for key in pool}
            pool_full = (pool["scores"] > NEG_INF).all(dim=1)
        if last:
            break

        # Next running beams: the best candidates that did not stop; the cache follows them.
        run_scores, pick = torch.topk(cand_scores.masked_fill(ends, NEG_INF), beams, dim=1)
        chosen, next_ids = source.gather(1, pick), token.gather(1, pick)
        run_tokens = _extend(run_tokens, chosen, next_ids, t)
        run_logp = _extend(run_logp, chosen, cand_logp.gather(1, pick), t)
        decoder.select((torch.arange(batch, device=device).unsqueeze(1) * beams + chosen).view(-1))

        # Can the best running beam still beat the worst pooled hypothesis? (Only once the pool is full.)
        worst = torch.where(pool_full, pool["scores"].min(dim=1).values, NEG_INF)
        improvable &= run_scores[:, 0] / (t + 1) ** alpha > worst
        if not bool(improvable.any()) or (config.early_stopping and bool(pool_full.all())):
            break
        logits = decoder.step(next_ids.view(-1))

    keep = config.num_return_sequences
    top = {key: value[:, :keep].reshape(batch * keep, *value.shape[2:]) for key, value in pool.items()}
    return Generation(
        tokens=top["tokens"],
        logprobs=top["logprobs"],
        lengths=top["lengths"],
        finish_reasons=["stop" if s else "length" for s in top["stopped"].tolist()],
        scores=top["scores"],
    )
