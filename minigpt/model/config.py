"""`ModelConfig`: every size and architecture switch of the one `Transformer`, as data.

Model sizes live in `conf/model/*.yaml`; each file is exactly the fields of this dataclass, so no code
ever branches on a model's *name*. Two families are covered by switches rather than subclasses:

* GPT-2 style: learned positions, LayerNorm with biases, GELU MLP, multi-head attention.
* Llama style: rotary positions (RoPE), RMSNorm, SwiGLU MLP, grouped-query attention, no biases.

The speedrun switches (docs/speedrun.md) are fields too: `qk_norm`, `activation=relu2`,
`logit_softcap`, `zero_init_proj` (and the existing `tie_embeddings`, `positions=rope`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from minigpt.utils.errors import ConfigError

Norm = Literal["layernorm", "rmsnorm"]
Activation = Literal["gelu", "gelu_tanh", "swiglu", "relu2"]
Positions = Literal["learned", "rope"]
Router = Literal["topk", "switch", "expert_choice"]
# What a block recomputes in backward instead of storing: all of it (True), one sublayer, or nothing.
Recompute = bool | Literal["attention", "mlp"]
# Keys of older `config.json` files (and command lines) and what they are called now.
RENAMED_KEYS = {"gradient_checkpointing": "activation_checkpointing"}


@dataclass
class MoEConfig:
    """Mixture-of-experts feed-forward layers (`model.moe`; `None` keeps every block dense).

    Routers: `topk` (each token picks its `top_k` experts, Shazeer et al. 2017), `switch` (top-1 with a
    capacity, Fedus et al. 2021) and `expert_choice` (each expert picks its tokens, Zhou et al. 2022).
    `capacity_factor` c bounds an expert's tokens at ⌈c·N·k/E⌉ (token choice; `None` = never drop) or
    sets ⌈c·N/E⌉ tokens per expert (expert choice: c is the mean number of experts per token).
    Every `every_n_layers`-th block (layers n-1, 2n-1, …) gets the MoE layer. Experts are MLPs of width
    `expert_hidden` (`None` = the dense `mlp_hidden`); `num_shared_experts` always-on experts are added
    (DeepSeekMoE, Dai et al. 2024). `jitter_noise` ε scales router inputs by U(1-ε, 1+ε) in training
    (Fedus et al. 2021 §2.4). The layer's `aux_loss` is `aux_loss_coef`·balancing + `z_loss_coef`·z-loss.
    """

    num_experts: int = 8
    top_k: int = 2
    router: Router = "topk"
    capacity_factor: float | None = None
    renormalize: bool = True
    every_n_layers: int = 1
    num_shared_experts: int = 0
    expert_hidden: int | None = None
    jitter_noise: float = 0.0
    aux_loss_coef: float = 0.01
    z_loss_coef: float = 0.001

    def validate(self, n_layer: int) -> None:
        """Raise `ConfigError` (field, value, fix) for an inconsistent MoE setting."""
        if self.router not in ("topk", "switch", "expert_choice"):
            raise ConfigError(f"model.moe.router={self.router!r} is unknown; use 'topk', 'switch' or 'expert_choice'.")
        if not isinstance(self.num_experts, int) or self.num_experts < 2:
            raise ConfigError(f"model.moe.num_experts={self.num_experts!r} must be an integer ≥ 2.")
        if not isinstance(self.top_k, int) or not 1 <= self.top_k <= self.num_experts:
            raise ConfigError(f"model.moe.top_k={self.top_k!r} must be between 1 and num_experts={self.num_experts}.")
        if self.router == "switch" and self.top_k != 1:
            raise ConfigError(f"model.moe.top_k={self.top_k} but router=switch routes to one expert; set top_k=1.")
        if self.router != "topk" and self.capacity_factor is None:
            raise ConfigError(
                f"model.moe.router={self.router} needs a capacity; set model.moe.capacity_factor (e.g. 1.25)."
            )
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise ConfigError(f"model.moe.capacity_factor={self.capacity_factor} must be positive (or null).")
        if self.router != "expert_choice" and self.top_k == 1 and self.renormalize:
            raise ConfigError(
                "model.moe.renormalize=true with top_k=1 makes every gate weight 1, so the router gets no "
                "gradient from the LM loss; set model.moe.renormalize=false."
            )
        if not isinstance(self.every_n_layers, int) or not 1 <= self.every_n_layers <= n_layer:
            raise ConfigError(
                f"model.moe.every_n_layers={self.every_n_layers!r} must be between 1 and n_layer={n_layer}."
            )
        if self.num_shared_experts < 0 or (self.expert_hidden is not None and self.expert_hidden <= 0):
            raise ConfigError(
                f"model.moe.num_shared_experts={self.num_shared_experts} must be ≥ 0 and "
                f"model.moe.expert_hidden={self.expert_hidden} positive or null."
            )
        if not 0.0 <= self.jitter_noise < 1.0:
            raise ConfigError(f"model.moe.jitter_noise={self.jitter_noise} must be in [0, 1).")
        if self.aux_loss_coef < 0 or self.z_loss_coef < 0:
            raise ConfigError(
                f"model.moe.aux_loss_coef={self.aux_loss_coef} and z_loss_coef={self.z_loss_coef} must be ≥ 0."
            )


@dataclass
class ModelConfig:
    """Shape and architecture of a decoder-only Transformer.

    `vocab_size` is usually left `None` in the YAML and filled in from the tokenizer at build time.
    `n_kv_head < n_head` gives grouped-query attention (Ainslie et al. 2023); `n_kv_head == 1` is
    multi-query attention. `mlp_hidden` defaults to 4·d for GELU and to the Llama rule
    (2/3 · 4d, rounded up to a multiple of 64) for SwiGLU, which keeps the parameter count equal.
    `activation_checkpointing` trades compute for memory in training (Chen et al. 2016): `true` keeps
    only each block's input and recomputes the block in backward; `attention` / `mlp` recompute only
    that sublayer (selective recomputation, Korthikanti et al. 2022); `false` stores everything.

    Switches from the speedrun literature (each off by default, so the GPT-2 and Llama families are unchanged):
    `activation=relu2` is the squared ReLU MLP (So et al. 2021, "Primer", §3); `qk_norm` RMS-normalises each
    head's queries and keys before the dot product (Henry et al. 2020; Dehghani et al. 2023, ViT-22B §3.1);
    `logit_softcap` c bounds the logits as c·tanh(z/c) (Gemma 2, Team et al. 2024, §2); `zero_init_proj`
    starts the projections into the residual stream at zero, so each block begins as the identity
    (modded-nanogpt, Jordan et al. 2024; cf. Fixup, Zhang et al. 2019).
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256
    vocab_size: int | None = None
    n_kv_head: int = 0  # 0 (null in YAML) = n_head
    mlp_hidden: int = 0  # 0 (null in YAML) = derived from n_embd and the activation
    # Width of one attention head; None = n_embd // n_head. Set when heads were pruned away
    # (`minigpt.compress.structured`): the heads left keep their width, so n_head · head_dim < n_embd.
    attn_head_dim: int | None = None
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    activation: Activation = "gelu_tanh"
    positions: Positions = "learned"
    rope_theta: float = 10000.0
    bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0
    init_std: float = 0.02
    qk_norm: bool = False
    logit_softcap: float | None = None
    zero_init_proj: bool = False
    activation_checkpointing: Recompute = False
    moe: MoEConfig | None = None
    # Free-form extras that later features attach (e.g. the MoE block, a reward head marker).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.moe, dict):  # from YAML or config.json
            known = {f.name for f in dataclasses.fields(MoEConfig)}
            if unknown := sorted(set(self.moe) - known):
                raise ConfigError(f"Unknown model.moe keys {unknown}; known keys are {sorted(known)}.")
            self.moe = MoEConfig(**self.moe)
        # Derived sizes are filled in here, so that every built config holds plain integers.
        if not self.n_kv_head:
            self.n_kv_head = self.n_head
        if not self.mlp_hidden:
            if self.activation == "swiglu":
                self.mlp_hidden = 64 * -(-int(2 * 4 * self.n_embd / 3) // 64)
            else:
                self.mlp_hidden = 4 * self.n_embd
        self.validate()

    @property
    def head_dim(self) -> int:
        """Width of one attention head (`attn_head_dim`, else n_embd // n_head)."""
        return self.attn_head_dim or self.n_embd // self.n_head

    def validate(self) -> None:
        """Raise `ConfigError` naming the field, its value and the fix for any inconsistent setting."""
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{name}={value!r} must be a positive integer.")
        if self.attn_head_dim is not None and (not isinstance(self.attn_head_dim, int) or self.attn_head_dim <= 0):
            raise ConfigError(f"model.attn_head_dim={self.attn_head_dim!r} must be a positive integer or null.")
        if self.attn_head_dim is None and self.n_embd % self.n_head:
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
        if self.activation not in ("gelu", "gelu_tanh", "swiglu", "relu2"):
            raise ConfigError(
                f"model.activation={self.activation!r} is unknown; use 'gelu', 'gelu_tanh', 'swiglu' or 'relu2'."
            )
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise ConfigError(f"model.logit_softcap={self.logit_softcap} must be positive (e.g. 30) or null.")
        if self.positions not in ("learned", "rope"):
            raise ConfigError(f"model.positions={self.positions!r} is unknown; use 'learned' or 'rope'.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1).")
        if self.vocab_size is not None and self.vocab_size <= 0:
            raise ConfigError(f"model.vocab_size={self.vocab_size} must be positive.")
        if self.activation_checkpointing not in (True, False, "attention", "mlp"):
            raise ConfigError(
                f"model.activation_checkpointing={self.activation_checkpointing!r} is unknown; "
                "use true (whole blocks), attention, mlp or false."
            )
        if self.moe is not None:
            self.moe.validate(self.n_layer)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, as written to a model folder's `config.json`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys with the list of known ones.

        Renamed keys of older model folders (`gradient_checkpointing`) are read under their new name.
        """
        data = {RENAMED_KEYS.get(key, key): value for key, value in data.items()}
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
