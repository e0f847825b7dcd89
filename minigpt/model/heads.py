"""Scalar heads on the shared trunk: the reward model and PPO's value model (critic).

A reward model is the same `Transformer` trunk with a linear head from the last hidden state to one
number (Ouyang et al. 2022, InstructGPT §3.5: the SFT model with its unembedding replaced by a scalar
projection). The score of a sequence is read at its *last real token*: with causal attention that is the
only position that has seen the whole prompt and completion; padding after it is never looked at.

On disk a reward model is an ordinary model folder (the trunk, so `load_model_folder` still works and
returns the language model underneath) plus `reward_head.safetensors`, with `extra.head = "reward"` in
its `config.json` saying what it is. `load_reward_model(folder)` returns a `RewardScorer`, the callable
`score(prompts, completions) -> Tensor` that PPO uses as its reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from minigpt.model.config import ModelConfig
from minigpt.model.folder import CONFIG, load_model_folder, resolve_model_folder, save_model_folder
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.chat import render_chat
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write

REWARD_HEAD = "reward_head.safetensors"


def last_token_index(lengths: Tensor) -> Tensor:
    """Index of each row's last real token, (B,), for right-padded rows of `lengths` real tokens."""
    if bool((lengths < 1).any()):
        raise ValueError("every sequence needs at least one token to be scored")
    return lengths - 1


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Token rows as right-padded ids (B, T_max) and their lengths (B,): what `last_token_index` reads."""
    lengths = torch.tensor([len(row) for row in rows], device=device)
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, device=device)
    return ids, lengths


class ScalarHead(nn.Module):
    """Linear C → 1 on the hidden state; initialised at 0 so every score starts equal (no prior)."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_embd, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, C) hidden states → (B,) scalars read at each row's last real token."""
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(lengths)]  # (B, C)
        return self.per_token(last)

    def per_token(self, hidden: Tensor) -> Tensor:
        """(…, C) hidden states → (…) scalars at every position (a value model's V(sₜ) for each prefix)."""
        return self.proj(hidden).squeeze(-1)


class RewardModel(nn.Module):
    """The shared trunk plus a `ScalarHead`: r(x) for right-padded token rows."""

    def __init__(self, trunk: Transformer, head: ScalarHead | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head if head is not None else ScalarHead(trunk.config.n_embd)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, dict]:
        """Rewards (B,) of `ids` (B, T) with `lengths` real tokens each, and the trunk's aux dict."""
        hidden, aux = self.trunk.hidden_states(ids)
        return self.head(hidden, lengths), aux


class ValueModel(nn.Module):
    """PPO's critic: a trunk plus a `ScalarHead` read at *every* position, V(sₜ) for each prefix s≤t.

    Started from the reward model by default (PPO-max, Zheng et al. 2023 §5.3: a critic that already
    knows what the reward model values learns useful advantages sooner), else from the policy's trunk.
    """

    def __init__(self, trunk: Transformer, head: ScalarHead | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head if head is not None else ScalarHead(trunk.config.n_embd)

    def forward(self, ids: Tensor, positions: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """Values (B, T) of every prefix of `ids` (B, T)."""
        hidden, _ = self.trunk.hidden_states(ids, positions=positions, attn_mask=attn_mask)
        return self.head.per_token(hidden)


def is_reward_folder(path: str | Path) -> bool:
    """Whether a model folder holds a reward model (its config says `extra.head = "reward"`)."""
    folder = resolve_model_folder(path)
    return ModelConfig.load(folder / CONFIG).extra.get("head") == "reward"


def save_reward_model(folder: str | Path, model: RewardModel, tokenizer: Tokenizer | None) -> Path:
    """Write the trunk as a model folder marked `extra.head = "reward"`, and the head's weights."""
    model.trunk.config.extra["head"] = "reward"
    folder = save_model_folder(folder, model.trunk, tokenizer)
    atomic_write(Path(folder) / REWARD_HEAD, lambda tmp: save_model(model.head, str(tmp)))
    return folder


class RewardScorer:
    """`score(prompts, completions)`: the reward model's score of each single-turn chat, (N,) float.

    Each pair is rendered with the chat template exactly as the reward stage trained on it (user
    prompt, assistant completion, closing `<|end|>`), so the score is read at that `<|end|>`.
    """

    def __init__(self, model: RewardModel, tokenizer: Tokenizer, batch_size: int = 64) -> None:
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
        """Scores of the (prompt, completion) pairs, in order."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        device = next(self.model.parameters()).device
        scores: list[Tensor] = []
        for start in range(0, len(prompts), self.batch_size):
            rows = [
                render_chat(self.tokenizer, [{"role": "user", "content": p}, {"role": "assistant", "content": c}])[0]
                for p, c in zip(prompts[start : start + self.batch_size], completions[start : start + self.batch_size])
            ]
            ids, lengths = right_pad(rows, pad, device)
            scores.append(self.model(ids, lengths)[0].float())
        return torch.cat(scores)

    score = __call__


def load_reward_model(path: str | Path, map_location: str = "cpu") -> RewardScorer:
    """The reward model of a folder written by `stage=reward`, as a `RewardScorer` (model: `.model`)."""
    folder = resolve_model_folder(path)
    if not is_reward_folder(folder) or not (folder / REWARD_HEAD).exists():
        raise ConfigError(
            f"{folder} is not a reward model folder (no extra.head='reward' in {CONFIG} or no {REWARD_HEAD}); "
            "pass the model/ folder a `stage=reward` run wrote."
        )
    trunk, tokenizer = load_model_folder(folder, map_location)
    if tokenizer is None:
        raise ConfigError(f"{folder} has no tokenizer.json; a reward model needs its tokenizer to score text.")
    head = ScalarHead(trunk.config.n_embd)
    load_model(head, str(folder / REWARD_HEAD), device=map_location)
    return RewardScorer(RewardModel(trunk, head.to(map_location)), tokenizer)
