"""`ModelConfig`: every size and architecture switch of the one `Transformer`, as data.

Model sizes live in `conf/model/*.yaml`; each file is exactly the fields of this dataclass, so no code
ever branches on a model's *name*. Two families are covered by switches rather than subclasses:

* GPT-2 style: learned positions, LayerNorm with biases, GELU MLP, multi-head attention.
* Llama style: rotary positions (RoPE), RMSNorm, SwiGLU MLP, grouped-query attention, no biases.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from minigpt.utils.errors import ConfigError

Norm = Literal["layernorm", "rmsnorm"]
Activation = Literal["gelu", "gelu_tanh", "swiglu"]
Positions = Literal["learned", "rope"]


@dataclass
class ModelConfig:
    """Shape and architecture of a decoder-only Transformer.

    `vocab_size` is usually left `None` in the YAML and filled in from the tokenizer at build time.
    `n_kv_head < n_head` gives grouped-query attention (Ainslie et al. 2023); `n_kv_head == 1` is
    multi-query attention. `mlp_hidden` defaults to 4·d for GELU and to the Llama rule
    (2/3 · 4d, rounded up to a multiple of 64) for SwiGLU, which keeps the parameter count equal.
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256
    vocab_size: int | None = None
    n_kv_head: int | None = None
    mlp_hidden: int | None = None
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    activation: Activation = "gelu_tanh"
    positions: Positions = "learned"
    rope_theta: float = 10000.0
    bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0
    init_std: float = 0.02
    gradient_checkpointing: bool = False
    # Free-form extras that later features attach (e.g. the MoE block, a reward head marker).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.mlp_hidden is None:
            if self.activation == "swiglu":
                self.mlp_hidden = 64 * -(-int(2 * 4 * self.n_embd / 3) // 64)
            else:
                self.mlp_hidden = 4 * self.n_embd
        self.validate()

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head

    def validate(self) -> None:
        """Raise `ConfigError` naming the field, its value and the fix for any inconsistent setting."""
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{name}={value!r} must be a positive integer.")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}; "
                "choose n_embd as a multiple of n_head."
            )
        if self.n_head % self.n_kv_head:
            raise ConfigError(
                f"model.n_kv_head={self.n_kv_head} must divide model.n_head={self.n_head} "
                "(each key/value head serves a whole group of query heads)."
            )
        if self.positions == "rope" and self.head_dim % 2:
            raise ConfigError(f"RoPE needs an even head dim, got {self.head_dim}; change n_embd or n_head.")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ConfigError(f"model.norm={self.norm!r} is unknown; use 'layernorm' or 'rmsnorm'.")
        if self.activation not in ("gelu", "gelu_tanh", "swiglu"):
            raise ConfigError(
                f"model.activation={self.activation!r} is unknown; use 'gelu', 'gelu_tanh' or 'swiglu'."
            )
        if self.positions not in ("learned", "rope"):
            raise ConfigError(f"model.positions={self.positions!r} is unknown; use 'learned' or 'rope'.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1).")
        if self.vocab_size is not None and self.vocab_size <= 0:
            raise ConfigError(f"model.vocab_size={self.vocab_size} must be positive.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, as written to a model folder's `config.json`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown model config keys {unknown}; known keys are {sorted(known)}.")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write `config.json` (atomically)."""
        from minigpt.utils.io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        """Read a `config.json` written by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
