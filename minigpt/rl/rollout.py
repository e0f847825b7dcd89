"""Rollouts: sample replies to chat prompts with the KV-cache generator, and lay them out for training.

A `Rollout` holds one batch of experience in the layout every RL stage (PPO, GRPO, ReST) trains on:

    input_ids (B, P + L):  [pad … pad  prompt ids][reply ids  pad … pad]
                            ←── left-padded, P ──→←── right-padded, L ──→

Left-padding the prompts lines every reply up at column P, so the logits that predict reply token t
are the same column P − 1 + t for every row and a (B, L) "response space" slice is one indexing
operation. Padding is never attended to (the attention mask drops pad keys) and does not count as a
position, so each row computes exactly what it would alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN


@dataclass
class Rollout:
    """A batch of prompts with one sampled reply each.

    Attributes:
        prompts: the prompt texts, one per row; completions: the decoded replies (without `<|end|>`).
        tasks: the task each prompt comes from (None for a user's own prompts).
        input_ids: (B, P + L) the layout above; positions: (B, P + L) 0-based among real tokens.
        attn_mask: (B, 1, P + L, P + L) causal and pad-free, or None when there is no left padding.
        prompt_width: P. response: (B, L) reply ids; mask: (B, L) True on real reply tokens.
        finished: (B,) whether the reply ended with `<|end|>` (rather than running out of tokens).
    """

    prompts: list[str]
    completions: list[str]
    tasks: list[str | None]
    input_ids: Tensor
    positions: Tensor
    attn_mask: Tensor | None
    prompt_width: int
    response: Tensor
    mask: Tensor
    finished: Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: Tensor) -> Rollout:
        """The sub-batch of `rows` (a minibatch), trimmed to its longest reply."""
        keep = rows.tolist()
        width = int(self.mask[rows].sum(dim=1).max())
        end = self.prompt_width + width
        return Rollout(
            [self.prompts[i] for i in keep], [self.completions[i] for i in keep], [self.tasks[i] for i in keep],
            self.input_ids[rows, :end], self.positions[rows, :end],
            None if self.attn_mask is None else self.attn_mask[rows][:, :, :end, :end],
            self.prompt_width, self.response[rows, :width], self.mask[rows, :width], self.finished[rows],
        )  # fmt: skip


def layout(prompt_ids: Sequence[Sequence[int]], replies: Sequence[Sequence[int]], pad_id: int) -> dict[str, Tensor]:
    """`input_ids`, `positions`, `attn_mask`, `response`, `mask` for prompts and replies (see module doc)."""
    width, length = max(len(p) for p in prompt_ids), max(max(len(r) for r in replies), 1)
    ids = torch.full((len(prompt_ids), width + length), pad_id, dtype=torch.long)
    valid = torch.zeros_like(ids, dtype=torch.bool)
    for i, (prompt, reply) in enumerate(zip(prompt_ids, replies)):
        ids[i, width - len(prompt) : width + len(reply)] = torch.tensor([*prompt, *reply], dtype=torch.long)
        valid[i, width - len(prompt) : width + len(reply)] = True
    positions = (valid.cumsum(dim=1) - 1).clamp(min=0)
    attn_mask = None
    if not bool(valid[:, :width].all()):
        n = ids.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        # A pad query may see itself only: a row with no allowed key would give softmax NaNs.
        attn_mask = (causal & valid[:, None, None, :]) | torch.eye(n, dtype=torch.bool)  # (B, 1, n, n)
    return {"input_ids": ids, "positions": positions, "attn_mask": attn_mask,
            "response": ids[:, width:], "mask": valid[:, width:]}  # fmt: skip


@torch.no_grad()
def sample_rollout(
    policy: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    prompt_ids: Sequence[Sequence[int]],
    config: GenerationConfig,
    tasks: Sequence[str | None] | None = None,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Sample one reply per prompt (stopping at `<|end|>`), decode it, and lay the batch out."""
    end = tokenizer.special_id(END_OF_TURN)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    config = dataclasses.replace(config, stop_tokens=sorted({*config.stop_tokens, end}))
    gen = generate(policy, prompt_ids, config, pad_id=pad, generator=generator)
    replies = gen.token_lists()
    finished = torch.tensor([bool(r) and r[-1] == end for r in replies])
    completions = [tokenizer.decode([t for t in r if t != end], skip_special=True) for r in replies]
    device = policy.tok_emb.weight.device
    tensors = {k: (v.to(device) if v is not None else None) for k, v in layout(prompt_ids, replies, pad).items()}
    return Rollout(
        list(prompts), completions, list(tasks) if tasks is not None else [None] * len(prompts),
        tensors["input_ids"], tensors["positions"], tensors["attn_mask"], max(len(p) for p in prompt_ids),
        tensors["response"], tensors["mask"], finished.to(device),
    )  # fmt: skip


def response_hidden(trunk: Transformer, rollout: Rollout) -> tuple[Tensor, dict]:
    """The trunk's hidden states at the columns that predict each reply token: (B, L, C), and its aux dict.

    The input stops one token short (the last reply token predicts nothing we score); column P − 1 + t
    has seen the prompt and reply tokens < t, i.e. it is the state in which token t was chosen.
    """
    ids = rollout.input_ids[:, :-1]
    mask = rollout.attn_mask[:, :, :-1, :-1] if rollout.attn_mask is not None else None
    hidden, aux = trunk.hidden_states(ids, positions=rollout.positions[:, :-1], attn_mask=mask)
    start = rollout.prompt_width - 1
    return hidden[:, start : start + rollout.response.shape[1]], aux


def response_logits(model: Transformer, rollout: Rollout) -> tuple[Tensor, dict]:
    """Next-token logits (B, L, V) for each reply position (the LM head runs on those columns only)."""
    hidden, aux = response_hidden(model, rollout)
    return model.lm_head(hidden), aux


def gather_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log p(tokens) under `logits` (B, L, V) → (B, L), in float32."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def frozen_logprobs(model: nn.Module, rollout: Rollout) -> Tensor:
    """log π(reply tokens) (B, L) under a model that is not being trained (reference, old policy)."""
    was_training = model.training
    model.eval()
    logits, _ = response_logits(model, rollout)  # type: ignore[arg-type]
    model.train(was_training)
    return gather_logprobs(logits, rollout.response) * rollout.mask
