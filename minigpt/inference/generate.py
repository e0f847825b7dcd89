"""Generation: greedy, sampling (temperature, top-k, top-p, min-p, repetition penalty) and beam search.

`generate(model, prompts, GenerationConfig(...))` takes a batch of prompts of any lengths and returns a
`Generation`: the new tokens, the model's log-probability of each chosen token (what PPO / GRPO store as
the behaviour policy's log-probs) and why each sequence stopped. A sequence stops at a stop token, a
stop string, or after `max_new_tokens`; finished rows leave the batch, so the rest run faster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from minigpt.inference.beam import beam_search
from minigpt.inference.config import Generation, GenerationConfig
from minigpt.inference.decoder import BatchDecoder
from minigpt.inference.sampling import process_logits, sample_from
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError
from minigpt.utils.modes import eval_mode

__all__ = ["Generation", "GenerationConfig", "generate"]

# Called after each step with the output rows that advanced and the token each of them got.
TokenCallback = Callable[[Tensor, Tensor], None]


def _as_prompt_lists(prompts: Sequence[Sequence[int]] | Tensor) -> list[list[int]]:
    """Accept a list of id lists, a (B, T) tensor or a 1-D tensor (one prompt)."""
    if isinstance(prompts, Tensor):
        prompts = prompts.unsqueeze(0) if prompts.dim() == 1 else prompts
        return prompts.tolist()
    return [list(map(int, p)) for p in prompts]


class StopStrings:
    """Detects stop strings in the text of each row's newest tokens."""

    def __init__(self, tokenizer: Tokenizer, strings: Sequence[str]) -> None:
        self.tokenizer, self.strings = tokenizer, list(strings)
        # Every token decodes to ≥ 1 byte, so a string of n bytes lies within the last n tokens.
        self.tail = max(len(s.encode("utf-8")) for s in self.strings)

    def hits(self, tokens: Tensor) -> Tensor:
        """Bool (N,): which rows of `tokens` (N, t) now contain a stop string in their tail."""
        tails = tokens[:, -self.tail :].tolist()
        found = [any(s in self.tokenizer.decode(row) for s in self.strings) for row in tails]
        return torch.tensor(found, dtype=torch.bool, device=tokens.device)


def _sample(
    decoder: BatchDecoder,
    config: GenerationConfig,
    pad_id: int,
    stop_strings: StopStrings | None,
    generator: torch.Generator | None,
    on_token: TokenCallback | None,
) -> Generation:
    """Greedy or sampled decoding; finished rows are dropped from the batch as they finish."""
    logits = decoder.prefill()
    repeats = config.num_return_sequences
    if repeats > 1:  # prefill each prompt once, then copy its cache for each sample
        decoder.select(torch.arange(decoder.batch_size, device=logits.device).repeat_interleave(repeats))
        logits = logits.repeat_interleave(repeats, dim=0)
    n, steps, device = decoder.batch_size, config.max_new_tokens, logits.device
    all_rows = torch.arange(n, device=device)
    rows: slice | Tensor = slice(None)  # output rows of the decoder's rows: all, until one finishes
    tokens = torch.full((n, steps), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(n, steps, device=device)
    lengths = torch.full((n,), steps, dtype=torch.long, device=device)
    stopped = torch.zeros(n, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(config.stop_tokens, dtype=torch.long, device=device) if config.stop_tokens else None
    seen = decoder.seen_tokens(logits.shape[-1]) if config.repetition_penalty != 1.0 else None
    greedy = config.strategy == "greedy"
    for t in range(steps):
        logits = logits.float()
        if greedy:
            scores = process_logits(logits, seen=seen, repetition=config.repetition_penalty)
            next_ids = scores.argmax(dim=-1)
        else:
            scores = process_logits(
                logits,
                seen=seen,
                repetition=config.repetition_penalty,
                temperature=config.temperature,
                top_k=config.top_k,
                top_p=config.top_p,
                min_p=config.min_p,
            )
            next_ids = sample_from(scores, generator)
        # log p(chosen); log_softmax is one fused kernel, several times faster here than logsumexp's.
        chosen = torch.log_softmax(logits, dim=-1).gather(1, next_ids.unsqueeze(1)).squeeze(1)
        tokens[rows, t], logprobs[rows, t] = next_ids, chosen
        if on_token is not None:
            on_token(all_rows[rows], next_ids)
        finished = torch.isin(next_ids, stop_ids) if stop_ids is not None else None
        if stop_strings is not None:
            hits = stop_strings.hits(tokens[rows, : t + 1])
            finished = hits if finished is None else finished | hits
        if finished is not None and bool(finished.any()):
            done = all_rows[rows][finished]
            stopped[done], lengths[done] = True, t + 1
            keep = (~finished).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            rows, next_ids = all_rows[rows][keep], next_ids[keep]
            decoder.select(keep)
            seen = seen[keep] if seen is not None else None
        if t == steps - 1:
            break
        if seen is not None:
            seen[torch.arange(len(next_ids), device=device), next_ids] = True
        logits = decoder.step(next_ids)
    reasons = ["stop" if s else "length" for s in stopped.tolist()]
    return Generation(tokens, logprobs, lengths, reasons)


def generate(
    model: Transformer,
    prompts: Sequence[Sequence[int]] | Tensor,
    config: GenerationConfig,
    *,
    pad_id: int = 0,
    tokenizer: Tokenizer | None = None,
    generator: torch.Generator | None = None,
    on_token: TokenCallback | None = None,
) -> Generation:
    """Continue each prompt (token ids, any lengths) as `config` says; see `Generation` for the result.

    `pad_id` fills padding in the returned tokens (never attended to). `tokenizer` is needed only for
    `config.stop_strings`. `generator` seeds sampling: the same seed gives the same tokens. `on_token`
    (greedy / sample) is called after every step, for streaming. The model is put in eval mode for the
    call and restored after.
    """
    config.validate()
    stop_strings = None
    if config.stop_strings:
        if tokenizer is None:
            raise ConfigError("stop_strings need the tokenizer: pass tokenizer=... to generate().")
        stop_strings = StopStrings(tokenizer, config.stop_strings)
    # inference_mode skips autograd bookkeeping (version counters, view tracking): less per-op overhead.
    with eval_mode(model), torch.inference_mode():
        decoder = BatchDecoder(model, _as_prompt_lists(prompts), config.max_new_tokens, compile=config.compile)
        if config.strategy == "beam":
            out = beam_search(decoder, config, pad_id)
        else:
            out = _sample(decoder, config, pad_id, stop_strings, generator, on_token)
    # Copies made outside inference mode are ordinary tensors, usable in a training step (RL stages).
    return dataclasses.replace(
        out,
        tokens=out.tokens.clone(),
        logprobs=out.logprobs.clone(),
        lengths=out.lengths.clone(),
        scores=None if out.scores is None else out.scores.clone(),
    )
