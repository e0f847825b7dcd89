"""What to generate (`GenerationConfig`) and what comes back (`Generation`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from minigpt.utils.errors import ConfigError

Strategy = Literal["greedy", "sample", "beam"]


@dataclass
class GenerationConfig:
    """How to decode. Sampling options apply to `sample` (the repetition penalty also to `greedy`);
    `num_beams`, `length_penalty` and `early_stopping` apply to `beam`.

    `num_return_sequences` gives that many sequences per prompt: independent samples (GRPO's groups)
    or the best beams. `stop_tokens` are ids, `stop_strings` need the tokenizer passed to `generate`;
    the token that completes a stop is kept in the output.

    `compile` runs each one-token step as one compiled C++ function (`minigpt.inference.compiled`), with
    the same tokens: 2–3× faster greedy decoding of a single sequence on nano models, less for batches
    and beams, after 15–40 s of compiling. It needs a C++ compiler, as `torch.compile` does.
    """

    max_new_tokens: int = 64
    strategy: Strategy = "sample"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    num_beams: int = 4
    length_penalty: float = 1.0
    early_stopping: bool = False
    num_return_sequences: int = 1
    stop_tokens: list[int] = field(default_factory=list)
    stop_strings: list[str] = field(default_factory=list)
    compile: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` naming the field, the value and the fix."""
        if self.strategy not in ("greedy", "sample", "beam"):
            raise ConfigError(f"strategy={self.strategy!r} is unknown; use greedy, sample or beam.")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens!r} must be an integer ≥ 1.")
        if self.temperature <= 0:
            raise ConfigError(f"temperature={self.temperature} must be > 0; for argmax decoding use strategy=greedy.")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k={self.top_k} must be ≥ 1 (or null for no top-k filter).")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p} must be in (0, 1] (or null).")
        if self.min_p is not None and not 0 <= self.min_p < 1:
            raise ConfigError(f"min_p={self.min_p} must be in [0, 1) (or null).")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty={self.repetition_penalty} must be > 0 (1.0 = off).")
        if self.num_return_sequences < 1:
            raise ConfigError(f"num_return_sequences={self.num_return_sequences} must be ≥ 1.")
        if self.strategy == "beam":
            if self.num_beams < 1 or self.num_return_sequences > self.num_beams:
                raise ConfigError(
                    f"num_beams={self.num_beams} must be ≥ 1 and ≥ num_return_sequences={self.num_return_sequences}."
                )
            if self.repetition_penalty != 1.0 or self.stop_strings:
                raise ConfigError(
                    "strategy=beam supports stop_tokens but not repetition_penalty or stop_strings; "
                    "drop them or use strategy=sample/greedy."
                )


@dataclass
class Generation:
    """The result: rows are grouped by prompt (prompt i's sequences are rows i·R … i·R + R - 1).

    Attributes:
        tokens: new tokens (N, T), right-padded with the pad id after each sequence's end.
        logprobs: log p(token | everything before it) under the model's own distribution (plain
            log-softmax of its logits, before temperature or filters), (N, T), 0 on padding. This equals
            a fresh forward pass over prompt + tokens.
        lengths: number of new tokens per row (N,).
        finish_reasons: "stop" (stop token or string) or "length" (hit `max_new_tokens`), per row.
        scores: beam search only: each sequence's length-normalised score (N,).
    """

    tokens: Tensor
    logprobs: Tensor
    lengths: Tensor
    finish_reasons: list[str]
    scores: Tensor | None = None

    @property
    def mask(self) -> Tensor:
        """Bool (N, T): True on real tokens, False on padding."""
        steps = torch.arange(self.tokens.shape[1], device=self.tokens.device)
        return steps.unsqueeze(0) < self.lengths.unsqueeze(1)

    def token_lists(self) -> list[list[int]]:
        """The new tokens of each row as Python lists, padding dropped."""
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths.tolist())]
