"""Sampled replies scored by a task's gold scorer, and their KL to a reference model.

Greedy exact-match (`minigpt.evaluation.tasks`) measures a policy's mode; preference training changes
its whole distribution, so DPO is judged on *samples* at temperature 1: the mean gold score of sampled
replies, and KL(π ‖ π_ref) estimated on the same samples as the mean of Σₜ [log π(yₜ) − log π_ref(yₜ)]
over each reply's tokens (an unbiased Monte-Carlo estimate because y ~ π; Ziegler et al. 2019 §2.2 use
the same per-sample estimate for their KL penalty).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.losses.logprobs import completion_targets, sequence_logprobs
from minigpt.model.transformer import Transformer
from minigpt.tasks.base import Task
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN, render_chat


@dataclass
class Reply:
    """One sampled reply: its text, its prompt and reply token ids, and Σ log π of the reply tokens."""

    text: str
    prompt_ids: list[int]
    tokens: list[int]
    logprob: float


@torch.no_grad()
def sample_replies(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    num_samples: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
) -> list[list[Reply]]:
    """`num_samples` sampled assistant replies to each single-turn user prompt (text up to `<|end|>`).

    `max_new_tokens` is cut to what the model's context leaves after the longest prompt.
    """
    end = tokenizer.special_id(END_OF_TURN)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    out: list[list[Reply]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [render_chat(tokenizer, [{"role": "user", "content": p}], True)[0] for p in chunk]
        room = model.config.block_size - max(len(i) for i in ids)
        if room < 1:
            raise ValueError(f"A prompt fills the model's whole context ({model.config.block_size} tokens).")
        config = GenerationConfig(
            max_new_tokens=min(max_new_tokens, room), temperature=temperature,
            num_return_sequences=num_samples, stop_tokens=[end],
        )  # fmt: skip
        gen = generate(model, ids, config, pad_id=pad, generator=generator)
        sums = (gen.logprobs * gen.mask).sum(dim=1).tolist()
        rows = gen.token_lists()
        for i, prompt_ids in enumerate(ids):
            group = range(i * num_samples, (i + 1) * num_samples)
            texts = [tokenizer.decode([t for t in rows[j] if t != end], skip_special=True) for j in group]
            out.append([Reply(text, prompt_ids, rows[j], sums[j]) for text, j in zip(texts, group)])
    return out


@torch.no_grad()
def reference_logprobs(reference: Transformer, replies: Sequence[Reply], pad_id: int = 0) -> torch.Tensor:
    """Σ log π_ref over each reply's tokens given its prompt, (N,)."""
    device = next(reference.parameters()).device
    rows = [r.prompt_ids + r.tokens for r in replies]
    ids = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, (row, reply) in enumerate(zip(rows, replies)):
        ids[i, : len(row)] = torch.tensor(row, device=device)
        mask[i, len(reply.prompt_ids) : len(row)] = True
    inputs, targets = completion_targets(ids, mask)
    was_training = reference.training
    reference.eval()
    logits, _ = reference(inputs)
    reference.train(was_training)
    return sequence_logprobs(logits, targets)


def gold_eval(
    model: Transformer,
    tokenizer: Tokenizer,
    task: Task,
    prompts: Sequence[str],
    reference: Callable[[list[Reply]], torch.Tensor] | None = None,
    num_samples: int = 4,
    max_new_tokens: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """Mean gold score of sampled replies (`score`) and, given `reference`, their mean KL to it (`kl`).

    `reference(replies)` returns the reference's Σ log-probs of the replies (N,), e.g.
    `partial(reference_logprobs, ref_model)`; a function rather than a model so that a LoRA policy can
    sample with its adapters on and be scored as the reference with them off.
    """
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    groups = sample_replies(model, tokenizer, prompts, num_samples, 1.0, max_new_tokens, generator)
    scores = [task.score(p, r.text) for p, group in zip(prompts, groups) for r in group]
    result = {"score": sum(scores) / len(scores)}
    if reference is not None:
        replies = [r for group in groups for r in group]
        ref = reference(replies).float().cpu()
        result["kl"] = float((torch.tensor([r.logprob for r in replies]) - ref).mean())
    return result
