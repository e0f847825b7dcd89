"""The one rollout path: sample replies to chat prompts, lay them out, and score their tokens' log-probs.

Every stage or tool that samples replies to prompts and then asks "how likely were these tokens under a
model" goes through this module: PPO (and GRPO, ReST, on-policy distillation next), DPO's gold
evaluation (`minigpt.evaluation.gold`) and the preference-pair generator (`minigpt.data.preference_pairs`).

API:

    rollout = sample_rollout(policy, tokenizer, prompts, prompt_ids, config, tasks, generator,
                             num_generations=G)          # G replies per prompt, rows prompt-major
    for rollout in sample_rollouts(policy, tokenizer, prompts, config, G, generator, batch_size=64): ...
    rollout.select(rows)                                 # a minibatch, trimmed to its longest reply
    rollout.group_size                                   # G: rows [i·G, (i+1)·G) answer prompt i
    hidden, aux = response_hidden(trunk, rollout)        # (B, L, C) states that chose each reply token
    logits, aux = response_logits(model, rollout)        # (B, L, V) next-token logits at those states
    logprobs = logprobs_of(logits, rollout)              # (B, L) log π(reply tokens), 0 on padding
    ref = frozen_logprobs(reference, rollout)            # the same for a model that is not training
    rollout.sampled_logprobs                             # (B, L) the sampler's own log π of each token

`prompt_ids=None` renders each prompt as a single-turn user message with the assistant's generation
prompt (`chat_prompt_ids`). Sampling stops at `<|end|>`, and `max_new_tokens` is cut to the room the
model's context leaves after the longest prompt.

A `Rollout` holds one batch of experience in the layout every RL stage trains on:

    input_ids (B, P + L):  [pad … pad  prompt ids][reply ids  pad … pad]
                            ←── left-padded, P ──→←── right-padded, L ──→

Left-padding the prompts lines every reply up at column P, so the logits that predict reply token t
are the same column P − 1 + t for every row and a (B, L) "response space" slice is one indexing
operation. Padding is never attended to (the attention mask drops pad keys) and does not count as a
position, so each row computes exactly what it would alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.losses.logprobs import token_logprobs
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import END_OF_TURN, render_chat
from minigpt.utils.errors import ConfigError
from minigpt.utils.modes import eval_mode


@dataclass
class Rollout:
    """A batch of prompts with sampled replies, `group_size` contiguous rows per prompt.

    Attributes:
        prompts: the prompt text of each row; completions: the decoded replies (without `<|end|>`).
        tasks: the task each row's prompt comes from (None for a user's own prompts).
        input_ids: (B, P + L) the layout above; positions: (B, P + L) 0-based among real tokens.
        attn_mask: (B, 1, P + L, P + L) causal and pad-free, or None when there is no left padding.
        prompt_width: P. response: (B, L) reply ids; mask: (B, L) True on real reply tokens.
        finished: (B,) whether the reply ended with `<|end|>` (rather than running out of tokens).
        sampled_logprobs: (B, L) log π of each reply token as the sampler computed it (0 on padding),
            None for a rollout not sampled here.
        group_size: G, the replies sampled per prompt; rows i·G … i·G + G − 1 share prompt i. A selection
            (`select`) is a plain batch of rows: group size 1.
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
    sampled_logprobs: Tensor | None = None
    group_size: int = 1

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def targets(self) -> Tensor:
        """(B, L) the reply tokens, `IGNORE_INDEX` on padding: what `losses.logprobs.token_logprobs` scores."""
        return self.response.masked_fill(~self.mask, IGNORE_INDEX)

    def select(self, rows: Tensor) -> Rollout:
        """The sub-batch of `rows` (a minibatch), trimmed to its longest reply."""
        keep = rows.tolist()
        width = int(self.mask[rows].sum(dim=1).max())
        end = self.prompt_width + width
        sampled = None if self.sampled_logprobs is None else self.sampled_logprobs[rows, :width]
        return Rollout(
            [self.prompts[i] for i in keep], [self.completions[i] for i in keep], [self.tasks[i] for i in keep],
            self.input_ids[rows, :end], self.positions[rows, :end],
            None if self.attn_mask is None else self.attn_mask[rows][:, :, :end, :end],
            self.prompt_width, self.response[rows, :width], self.mask[rows, :width], self.finished[rows], sampled,
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


def chat_prompt_ids(tokenizer: Tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Each prompt as a single-turn user message followed by the assistant's generation prompt."""
    return [render_chat(tokenizer, [{"role": "user", "content": p}], True)[0] for p in prompts]


@torch.no_grad()
def sample_rollout(
    policy: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    prompt_ids: Sequence[Sequence[int]] | None,
    config: GenerationConfig,
    tasks: Sequence[str | None] | None = None,
    generator: torch.Generator | None = None,
    num_generations: int = 1,
) -> Rollout:
    """Sample `num_generations` replies per prompt (stopping at `<|end|>`), decode them, lay the batch out.

    Rows are prompt-major: the G replies to prompt i are rows i·G … i·G + G − 1 (GRPO's groups). The
    prompt is prefilled once and its KV cache copied for each of its replies (`num_return_sequences`).
    """
    if not isinstance(num_generations, int) or num_generations < 1:
        raise ConfigError(f"num_generations={num_generations!r} must be an integer ≥ 1 (replies per prompt).")
    prompt_ids = chat_prompt_ids(tokenizer, prompts) if prompt_ids is None else [list(p) for p in prompt_ids]
    room = policy.config.block_size - max(len(p) for p in prompt_ids)
    if room < 1:
        raise ConfigError(
            f"A prompt fills the model's whole context (block_size={policy.config.block_size}); shorten the prompts."
        )
    end = tokenizer.special_id(END_OF_TURN)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    config = dataclasses.replace(
        config, stop_tokens=sorted({*config.stop_tokens, end}), max_new_tokens=min(config.max_new_tokens, room),
        num_return_sequences=num_generations,
    )  # fmt: skip
    gen = generate(policy, prompt_ids, config, pad_id=pad, generator=generator)
    replies = gen.token_lists()
    g = num_generations
    row_prompts = [p for p in prompts for _ in range(g)]
    row_ids = [ids for ids in prompt_ids for _ in range(g)]
    row_tasks = [t for t in (tasks if tasks is not None else [None] * len(prompts)) for _ in range(g)]
    finished = torch.tensor([bool(r) and r[-1] == end for r in replies])
    completions = [tokenizer.decode([t for t in r if t != end], skip_special=True) for r in replies]
    device = policy.tok_emb.weight.device
    tensors = {k: (v.to(device) if v is not None else None) for k, v in layout(row_ids, replies, pad).items()}
    mask = tensors["mask"]
    sampled = torch.zeros(mask.shape, device=device)
    width = min(mask.shape[1], gen.logprobs.shape[1])
    sampled[:, :width] = gen.logprobs[:, :width].to(device)
    return Rollout(
        row_prompts, completions, row_tasks, tensors["input_ids"], tensors["positions"], tensors["attn_mask"],
        max(len(p) for p in prompt_ids), tensors["response"], mask, finished.to(device), sampled * mask, g,
    )  # fmt: skip


def sample_rollouts(
    policy: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    config: GenerationConfig,
    num_generations: int = 1,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    tasks: Sequence[str | None] | None = None,
) -> Iterator[Rollout]:
    """`sample_rollout` over chat `prompts` in chunks of `batch_size` prompts (memory stays bounded)."""
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        chunk_tasks = None if tasks is None else tasks[start : start + batch_size]
        yield sample_rollout(policy, tokenizer, chunk, None, config, chunk_tasks, generator, num_generations)


def concat_rollouts(rollouts: Sequence[Rollout], pad_id: int) -> Rollout:
    """One rollout of the rows of several (GRPO's dynamic-sampling buffer), laid out again as one batch.

    Each row's prompt is read back from its left-padded columns (its last prompt token's position + 1
    is its length), so the batches may differ in prompt width and reply length. Group size: the common
    one if all agree, else 1.
    """
    prompt_ids: list[list[int]] = []
    replies: list[list[int]] = []
    for part in rollouts:
        width = part.prompt_width
        lengths = (part.positions[:, width - 1] + 1).tolist()
        for i, n in enumerate(lengths):
            prompt_ids.append(part.input_ids[i, width - n : width].tolist())
            replies.append(part.response[i, part.mask[i]].tolist())
    device = rollouts[0].input_ids.device
    tensors = {k: (v.to(device) if v is not None else None) for k, v in layout(prompt_ids, replies, pad_id).items()}
    mask = tensors["mask"]
    sampled = None
    if all(r.sampled_logprobs is not None for r in rollouts):
        sampled = torch.zeros(mask.shape, device=device)
        row = 0
        for part in rollouts:
            assert part.sampled_logprobs is not None
            sampled[row : row + len(part), : part.mask.shape[1]] = part.sampled_logprobs
            row += len(part)
    sizes = {r.group_size for r in rollouts}
    return Rollout(
        [p for r in rollouts for p in r.prompts], [c for r in rollouts for c in r.completions],
        [t for r in rollouts for t in r.tasks], tensors["input_ids"], tensors["positions"], tensors["attn_mask"],
        max(len(p) for p in prompt_ids), tensors["response"], mask, torch.cat([r.finished for r in rollouts]),
        sampled, sizes.pop() if len(sizes) == 1 else 1,
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


def logprobs_of(logits: Tensor, rollout: Rollout) -> Tensor:
    """log π(reply tokens) (B, L) under `logits` (B, L, V) from `response_logits`, 0 on padding, float32."""
    return token_logprobs(logits, rollout.targets)


@torch.no_grad()
def frozen_logprobs(model: nn.Module, rollout: Rollout) -> Tensor:
    """log π(reply tokens) (B, L) under a model that is not being trained (reference, old policy, teacher)."""
    with eval_mode(model):
        logits, _ = response_logits(model, rollout)  # type: ignore[arg-type]
    return logprobs_of(logits, rollout)
